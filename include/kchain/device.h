// Device: one compute device that instances run on, CUDA GPU or the host CPU.
//
// Thread-safety: every method of Device is safe to call from any thread.
#ifndef KCHAIN_DEVICE_H_
#define KCHAIN_DEVICE_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "kchain/status.h"

namespace kchain {

namespace internal {
class Backend;
}  // namespace internal

enum class DeviceKind {
  kHost,  // kernels are plain C/C++ functions over host memory (target "host")
  kCuda,  // kernels enqueue CUDA work on a stream (target "cuda")
};

// "host" or "cuda": the same strings kernel libraries declare as their target.
std::string_view DeviceKindName(DeviceKind kind);

// Parses "host" or "cuda". InvalidArgument for anything else.
StatusOr<DeviceKind> ParseDeviceKind(std::string_view name);

// How a host thread waits for the GPU to finish (cudaSetDeviceFlags' schedule).
enum class GpuWait {
  kAuto,   // CUDA's heuristic: spins while the process has fewer contexts than cores
  kSpin,   // spins: the lowest latency, a core per waiting thread
  kYield,  // spins with sched_yield(): other runnable threads go first
  kBlock,  // sleeps on an interrupt: no core while waiting, a wake-up's latency per wait
};

// "auto", "spin", "yield" or "block". InvalidArgument for anything else.
StatusOr<GpuWait> ParseGpuWait(std::string_view name);

struct DeviceOptions {
  GpuWait wait = GpuWait::kAuto;  // CUDA only; the host device ignores it
};

// What a function spec is validated against.
struct DeviceLimits {
  int max_threads_per_block = 0;  // upper bound for a stage's `block`
  int max_grid_size = 0;          // upper bound for a stage's `grid` (x dimension)
  size_t total_memory_bytes = 0;  // device memory (CUDA) or physical memory (host)
  size_t max_buffer_bytes = 0;    // the largest single buffer a spec may declare
};

class Device {
 public:
  // Opens device `ordinal` of `kind`. For CUDA this creates the device's primary context,
  // which takes a few hundred milliseconds on a server GPU. Fails with kUnavailable when the
  // runtime was built without CUDA, no GPU is visible, or `ordinal` is out of range.
  static StatusOr<std::shared_ptr<Device>> Open(DeviceKind kind, int ordinal = 0);
  // As above, with `options` applied before the context is created.
  static StatusOr<std::shared_ptr<Device>> Open(DeviceKind kind, int ordinal,
                                                const DeviceOptions& options);

  // Opens CUDA device 0 when the runtime was built with CUDA and a GPU is visible, the host
  // device otherwise.
  static StatusOr<std::shared_ptr<Device>> OpenAuto();

  // Whether this build of the runtime contains the CUDA backend.
  static bool CudaCompiledIn();

  // Number of visible CUDA devices; 0 when CUDA is not compiled in or no GPU is usable.
  static int CudaDeviceCount();

  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  DeviceKind kind() const { return kind_; }
  int ordinal() const { return ordinal_; }
  // Human-readable, e.g. "NVIDIA H100 80GB HBM3 (sm_90, driver 13.0, runtime 13.0)".
  const std::string& name() const { return name_; }
  const DeviceLimits& limits() const { return limits_; }

  // True once a sticky error (illegal address, device assert, ...) has poisoned the device's
  // context. Nothing more can run on a broken device in this process; callers should stop
  // routing work to it and replace the process.
  bool broken() const;
  // Why the device broke; empty while it is healthy.
  std::string broken_reason() const;

  // Bytes of device memory currently allocated by kchain on this device.
  size_t memory_in_use() const;
  // Device memory free now, as the device reports it (all processes' use counted; 0 when it
  // cannot be read). Takes a few microseconds on CUDA: not for the hot path.
  size_t free_memory_bytes() const;

  // Page-locks `bytes` of existing host memory at `ptr` (cudaHostRegister) so that copies
  // from and to it run at pinned speed, until the returned handle is destroyed. A no-op on
  // the host backend. kInvalidArgument for a null or empty range; kInternal on CUDA errors.
  class HostRegistration {
   public:
    HostRegistration() = default;
    HostRegistration(HostRegistration&& other) noexcept;
    HostRegistration& operator=(HostRegistration&& other) noexcept;
    ~HostRegistration();

   private:
    friend class Device;
    HostRegistration(const Device* device, void* ptr) : device_(device), ptr_(ptr) {}
    const Device* device_ = nullptr;
    void* ptr_ = nullptr;
  };
  StatusOr<HostRegistration> RegisterHostMemory(void* ptr, size_t bytes) const;

  // Runtime-internal; not for kernel authors or gateway code.
  internal::Backend& backend() const { return *backend_; }

 private:
  Device(DeviceKind kind, int ordinal, std::unique_ptr<internal::Backend> backend);

  DeviceKind kind_;
  int ordinal_;
  std::string name_;
  DeviceLimits limits_;
  std::unique_ptr<internal::Backend> backend_;
};

}  // namespace kchain

#endif  // KCHAIN_DEVICE_H_
