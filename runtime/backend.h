// The device backend interface: the primitives the instance's run loop is written against.
// Internal to the runtime.
//
// The run algorithm (runtime/instance.cc) is written once over these primitives. The CUDA
// backend maps them to the CUDA runtime API; the host backend maps copies to memcpy, timers
// to host clock readings and synchronization to nothing, because host launchers do their
// work synchronously.
//
// Thread-safety: every method may be called from any thread, for distinct streams/handles
// concurrently. A backend tracks its allocations with atomics.
#ifndef KCHAIN_RUNTIME_BACKEND_H_
#define KCHAIN_RUNTIME_BACKEND_H_

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

#include "kchain/device.h"
#include "kchain/kernel.h"
#include "kchain/status.h"

namespace kchain::internal {

class Backend {
 public:
  virtual ~Backend() = default;

  virtual DeviceKind kind() const = 0;
  virtual std::string name() const = 0;
  virtual DeviceLimits limits() const = 0;
  // Device memory free now, as the device tells it (every process's use counted); the host
  // backend answers its total less what this process allocated through it.
  virtual size_t free_memory_bytes() { return limits().total_memory_bytes - memory_in_use(); }

  // Makes the device current on the calling thread. Cheap when it already is.
  virtual Status Activate() = 0;

  // Device memory. Allocating 0 bytes yields nullptr. Free never fails (errors on a broken
  // device are ignored).
  virtual StatusOr<void*> AllocDevice(size_t bytes) = 0;
  virtual void FreeDevice(void* ptr, size_t bytes) = 0;

  // Page-locked host memory (plain aligned host memory on the host backend).
  virtual StatusOr<void*> AllocPinned(size_t bytes) = 0;
  virtual void FreePinned(void* ptr) = 0;

  // Page-locks existing host memory (a no-op on the host backend).
  virtual Status RegisterHost(void* ptr, size_t bytes) { return Status(); }
  virtual void UnregisterHost(void* ptr) {}

  virtual StatusOr<kchain_stream_t> CreateStream() = 0;
  virtual void DestroyStream(kchain_stream_t stream) = 0;

  // A timer marks a point on a stream; ElapsedUs measures between two marks once the stream
  // has been synchronized. `capturing` says whether the stream is being captured into a graph,
  // where the mark must become a node of the graph.
  virtual StatusOr<void*> CreateTimer() = 0;
  virtual void DestroyTimer(void* timer) = 0;
  virtual Status RecordTimer(void* timer, kchain_stream_t stream, bool capturing) = 0;
  virtual double ElapsedUs(void* start, void* end) = 0;

  virtual Status CopyToDeviceAsync(void* dst, const void* src, size_t bytes,
                                   kchain_stream_t stream) = 0;
  virtual Status CopyToHostAsync(void* dst, const void* src, size_t bytes,
                                 kchain_stream_t stream) = 0;

  // After a launcher returns: reports a launch that failed (bad configuration, missing
  // kernel image, ...) and clears the error. Always OK on the host backend.
  virtual Status CheckLaunch() = 0;

  virtual Status Synchronize(kchain_stream_t stream) = 0;

  // CUDA graphs. The host backend reports SupportsGraphs() == false and is never asked.
  virtual bool SupportsGraphs() const = 0;
  virtual Status BeginCapture(kchain_stream_t stream) { return UnimplementedError("graphs"); }
  // Ends the capture and instantiates the graph. Always ends the capture, also on failure.
  virtual StatusOr<void*> EndCapture(kchain_stream_t stream) {
    return UnimplementedError("graphs");
  }
  virtual Status LaunchGraph(void* graph, kchain_stream_t stream) {
    return UnimplementedError("graphs");
  }
  virtual void DestroyGraph(void* graph) {}

  // Sticky-fault state shared by everything on the device.
  bool broken() const { return broken_.load(std::memory_order_acquire); }
  std::string broken_reason() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return broken_reason_;
  }
  void MarkBroken(const std::string& reason) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!broken_.load(std::memory_order_relaxed)) broken_reason_ = reason;
    broken_.store(true, std::memory_order_release);
  }

  size_t memory_in_use() const { return memory_in_use_.load(std::memory_order_relaxed); }

 protected:
  std::atomic<size_t> memory_in_use_{0};

 private:
  std::atomic<bool> broken_{false};
  mutable std::mutex mutex_;
  std::string broken_reason_;
};

std::unique_ptr<Backend> MakeHostBackend();

// Returns kUnavailable when CUDA is not compiled in, no device is visible or `ordinal` is out
// of range.
StatusOr<std::unique_ptr<Backend>> MakeCudaBackend(int ordinal, GpuWait wait);
bool CudaCompiledIn();
int CudaDeviceCount();

}  // namespace kchain::internal

#endif  // KCHAIN_RUNTIME_BACKEND_H_
