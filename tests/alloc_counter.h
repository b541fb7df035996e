// Counts heap allocations, for tests that prove a path allocates nothing. Include in exactly
// one source file of a test binary that links with
//   -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=aligned_alloc,--wrap=posix_memalign
// Every operator new in the binary and every malloc-family call made by code linked
// statically into it (kchain's runtime) is counted while g_armed is set.
#ifndef KCHAIN_TESTS_ALLOC_COUNTER_H_
#define KCHAIN_TESTS_ALLOC_COUNTER_H_

#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

namespace alloc_counter {
std::atomic<bool> g_armed{false};
std::atomic<long> g_allocations{0};    // all of them
std::atomic<long> g_c_allocations{0};  // the malloc family only (reached through --wrap)
// operator new calls made from inside the CUDA libraries (libcudart, libcuda): the driver's
// own bookkeeping, not kchain's, so they are counted apart.
std::atomic<long> g_cuda_allocations{0};

bool CalledFromCuda(void* return_address) {
  Dl_info info{};
  if (dladdr(return_address, &info) == 0 || info.dli_fname == nullptr) return false;
  const char* base = std::strrchr(info.dli_fname, '/');
  return std::strncmp(base != nullptr ? base + 1 : info.dli_fname, "libcuda", 7) == 0;
}

// For operator new: attributes the allocation to its caller's library.
inline void Count(void* return_address) {
  if (!g_armed.load(std::memory_order_relaxed)) return;
  if (CalledFromCuda(return_address)) {
    g_cuda_allocations.fetch_add(1);
  } else {
    g_allocations.fetch_add(1);
  }
}
void CountC() {
  if (g_armed.load(std::memory_order_relaxed)) {
    g_allocations.fetch_add(1);
    g_c_allocations.fetch_add(1);
  }
}
}  // namespace alloc_counter
using alloc_counter::CountC;

extern "C" {
void* __real_malloc(size_t);
void* __real_calloc(size_t, size_t);
void* __real_realloc(void*, size_t);
void* __real_aligned_alloc(size_t, size_t);
int __real_posix_memalign(void**, size_t, size_t);
void* __wrap_malloc(size_t n) {
  CountC();
  return __real_malloc(n);
}
void* __wrap_calloc(size_t n, size_t s) {
  CountC();
  return __real_calloc(n, s);
}
void* __wrap_realloc(void* p, size_t n) {
  CountC();
  return __real_realloc(p, n);
}
void* __wrap_aligned_alloc(size_t a, size_t n) {
  CountC();
  return __real_aligned_alloc(a, n);
}
int __wrap_posix_memalign(void** p, size_t a, size_t n) {
  CountC();
  return __real_posix_memalign(p, a, n);
}
}

namespace alloc_counter {
inline void* Allocate(size_t n, void* caller) {
  Count(caller);
  return __real_malloc(n ? n : 1);
}
inline void* AllocateAligned(size_t n, std::align_val_t a, void* caller) {
  Count(caller);
  const size_t align = static_cast<size_t>(a);
  return __real_aligned_alloc(align, (n + align - 1) / align * align);
}
}  // namespace alloc_counter

void* operator new(size_t n) {
  if (void* p = alloc_counter::Allocate(n, __builtin_return_address(0))) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) {
  if (void* p = alloc_counter::Allocate(n, __builtin_return_address(0))) return p;
  throw std::bad_alloc();
}
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  return alloc_counter::Allocate(n, __builtin_return_address(0));
}
void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  return alloc_counter::Allocate(n, __builtin_return_address(0));
}
void* operator new(size_t n, std::align_val_t a) {
  if (void* p = alloc_counter::AllocateAligned(n, a, __builtin_return_address(0))) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n, std::align_val_t a) {
  if (void* p = alloc_counter::AllocateAligned(n, a, __builtin_return_address(0))) return p;
  throw std::bad_alloc();
}
// Replaced new pairs with free() on purpose: both sides are ours.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

// Counts the allocations `fn` makes.
template <typename Fn>
long CountAllocations(Fn&& fn) {
  alloc_counter::g_allocations = 0;
  alloc_counter::g_c_allocations = 0;
  alloc_counter::g_cuda_allocations = 0;
  alloc_counter::g_armed = true;
  fn();
  alloc_counter::g_armed = false;
  return alloc_counter::g_allocations.load();
}

#endif  // KCHAIN_TESTS_ALLOC_COUNTER_H_
