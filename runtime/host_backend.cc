// The host backend: "device" memory is ordinary host memory and launchers run synchronously
// on the calling thread. It runs on machines with no GPU and is the reference that GPU
// results are checked against.
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <new>

#include "runtime/backend.h"

namespace kchain::internal {
namespace {

// Same alignment the CUDA allocator guarantees, so that kernels see the same contract.
constexpr size_t kAlignment = 256;

void* AlignedAlloc(size_t bytes) {
  const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  return std::aligned_alloc(kAlignment, rounded);
}

size_t PhysicalMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page_size <= 0) return size_t{1} << 34;  // 16 GiB if unknown
  return static_cast<size_t>(pages) * static_cast<size_t>(page_size);
}

using Clock = std::chrono::steady_clock;

class HostBackend final : public Backend {
 public:
  DeviceKind kind() const override { return DeviceKind::kHost; }
  std::string name() const override { return "host CPU"; }

  DeviceLimits limits() const override {
    DeviceLimits limits;
    // The CUDA limits, so that a spec validated on the host also validates on a GPU.
    limits.max_threads_per_block = 1024;
    limits.max_grid_size = INT_MAX;
    limits.total_memory_bytes = PhysicalMemoryBytes();
    limits.max_buffer_bytes = limits.total_memory_bytes / 2;
    return limits;
  }

  Status Activate() override { return Status(); }

  StatusOr<void*> AllocDevice(size_t bytes) override {
    if (bytes == 0) return static_cast<void*>(nullptr);
    void* ptr = AlignedAlloc(bytes);
    if (ptr == nullptr) {
      return ResourceExhaustedError("host backend: cannot allocate " + std::to_string(bytes) +
                                    " bytes of buffer memory");
    }
    memory_in_use_.fetch_add(bytes, std::memory_order_relaxed);
    return ptr;
  }

  void FreeDevice(void* ptr, size_t bytes) override {
    if (ptr == nullptr) return;
    std::free(ptr);
    memory_in_use_.fetch_sub(bytes, std::memory_order_relaxed);
  }

  StatusOr<void*> AllocPinned(size_t bytes) override {
    if (bytes == 0) return static_cast<void*>(nullptr);
    void* ptr = AlignedAlloc(bytes);
    if (ptr == nullptr) {
      return ResourceExhaustedError("host backend: cannot allocate " + std::to_string(bytes) +
                                    " bytes of staging memory");
    }
    return ptr;
  }

  void FreePinned(void* ptr) override { std::free(ptr); }

  StatusOr<kchain_stream_t> CreateStream() override { return kchain_stream_t{nullptr}; }
  void DestroyStream(kchain_stream_t) override {}

  StatusOr<void*> CreateTimer() override {
    auto* timer = new (std::nothrow) Clock::time_point();
    if (timer == nullptr) return ResourceExhaustedError("host backend: cannot allocate a timer");
    return static_cast<void*>(timer);
  }
  void DestroyTimer(void* timer) override { delete static_cast<Clock::time_point*>(timer); }

  Status RecordTimer(void* timer, kchain_stream_t, bool) override {
    // Work is synchronous here, so the host clock at enqueue time is the completion time.
    *static_cast<Clock::time_point*>(timer) = Clock::now();
    return Status();
  }

  double ElapsedUs(void* start, void* end) override {
    const auto delta =
        *static_cast<Clock::time_point*>(end) - *static_cast<Clock::time_point*>(start);
    return std::chrono::duration<double, std::micro>(delta).count();
  }

  Status CopyToDeviceAsync(void* dst, const void* src, size_t bytes, kchain_stream_t) override {
    if (bytes != 0) std::memcpy(dst, src, bytes);
    return Status();
  }

  Status CopyToHostAsync(void* dst, const void* src, size_t bytes, kchain_stream_t) override {
    if (bytes != 0) std::memcpy(dst, src, bytes);
    return Status();
  }

  Status CheckLaunch() override { return Status(); }
  Status Synchronize(kchain_stream_t) override { return Status(); }
  bool SupportsGraphs() const override { return false; }
};

}  // namespace

std::unique_ptr<Backend> MakeHostBackend() { return std::make_unique<HostBackend>(); }

}  // namespace kchain::internal
