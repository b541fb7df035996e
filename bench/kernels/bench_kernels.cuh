// The bench kernels' CUDA code. Shared by the kchain launchers (bench_kernels.cu) and by the
// plain-CUDA baseline in bench/micro/native_cuda.cu, so that both launch the same code.
#ifndef KCHAIN_BENCH_KERNELS_BENCH_KERNELS_CUH_
#define KCHAIN_BENCH_KERNELS_BENCH_KERNELS_CUH_

#include <cstddef>
#include <cstdint>

// out[0] += 1. Only thread 0 of block 0 writes, so any grid and block are correct; launched
// with one block of one thread it is the smallest launch there is.
static __global__ void bench_noop_kernel(float* out) {
  if (blockIdx.x == 0 && threadIdx.x == 0) out[0] += 1.0f;
}

// Copies `n` bytes, grid-stride: 16-byte vectors when both pointers are 16-byte aligned (the
// runtime's buffers are 256-byte aligned), then the tail (or, unaligned, everything) by bytes.
static __global__ void bench_copy_kernel(const unsigned char* __restrict__ in,
                                         unsigned char* __restrict__ out, size_t n) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  const size_t first = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  size_t done = 0;
  if (((reinterpret_cast<uintptr_t>(in) | reinterpret_cast<uintptr_t>(out)) & 15u) == 0) {
    const size_t vectors = n / sizeof(uint4);
    const uint4* vin = reinterpret_cast<const uint4*>(in);
    uint4* vout = reinterpret_cast<uint4*>(out);
    for (size_t i = first; i < vectors; i += stride) vout[i] = vin[i];
    done = vectors * sizeof(uint4);
  }
  for (size_t i = done + first; i < n; i += stride) out[i] = in[i];
}

// Faults for the containment benchmark (bench_fault): a write no allocation covers (an
// illegal address, a sticky fault), __trap(), and a kernel that never ends (the flag is
// cleared first and nothing sets it).
static __global__ void bench_bad_address_kernel(float* p) { p[threadIdx.x] = 1.0f; }
static __global__ void bench_trap_kernel() { __trap(); }
static __global__ void bench_spin_kernel(volatile int* flag) {
  while (*flag == 0) {
  }
}

#endif  // KCHAIN_BENCH_KERNELS_BENCH_KERNELS_CUH_
