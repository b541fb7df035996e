// The CUDA backend: the run-loop primitives over the CUDA runtime API.
//
// Every CUDA call is checked. A failure becomes a Status that names the call and this file;
// a sticky error (one after which the context is unusable) also marks the device broken.
#include <cuda_runtime_api.h>

#include <cstdio>
#include <string>

#include "runtime/backend.h"

namespace kchain::internal {
namespace {

// Errors after which every later CUDA call in this process fails: the context is gone.
bool IsStickyError(cudaError_t err) {
  switch (err) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchTimeout:
    case cudaErrorAssert:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorLaunchFailure:
    case cudaErrorTensorMemoryLeak:
    case cudaErrorContained:
    case cudaErrorECCUncorrectable:
    case cudaErrorNvlinkUncorrectable:
    case cudaErrorMpsClientTerminated:
    case cudaErrorExternalDevice:
      return true;
    default:
      return false;
  }
}

// Errors that mean a kernel (not kchain) did something wrong.
bool IsKernelError(cudaError_t err) {
  return IsStickyError(err) || err == cudaErrorLaunchOutOfResources ||
         err == cudaErrorInvalidConfiguration || err == cudaErrorNoKernelImageForDevice ||
         err == cudaErrorInvalidDeviceFunction || err == cudaErrorInvalidPtx ||
         err == cudaErrorUnsupportedPtxVersion || err == cudaErrorStreamCaptureImplicit ||
         err == cudaErrorStreamCaptureUnsupported || err == cudaErrorStreamCaptureInvalidated;
}

std::string Describe(cudaError_t err) {
  return std::string(cudaGetErrorString(err)) + " (" + cudaGetErrorName(err) + ")";
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int ordinal) : ordinal_(ordinal) {}

  Status Init(GpuWait wait) {
    KCHAIN_RETURN_IF_ERROR(Check(cudaSetDevice(ordinal_), "cudaSetDevice", __LINE__));
    if (wait != GpuWait::kAuto) {
      const unsigned flags = wait == GpuWait::kSpin    ? cudaDeviceScheduleSpin
                             : wait == GpuWait::kYield ? cudaDeviceScheduleYield
                                                       : cudaDeviceScheduleBlockingSync;
      KCHAIN_RETURN_IF_ERROR(Check(cudaSetDeviceFlags(flags), "cudaSetDeviceFlags", __LINE__));
    }
    // Creates the primary context now, so that the cost is paid at open, not at first use.
    KCHAIN_RETURN_IF_ERROR(
        Check(cudaFree(nullptr), "cudaFree(nullptr) (context creation)", __LINE__));
    cudaDeviceProp prop{};
    KCHAIN_RETURN_IF_ERROR(
        Check(cudaGetDeviceProperties(&prop, ordinal_), "cudaGetDeviceProperties", __LINE__));
    int driver = 0, runtime = 0;
    KCHAIN_RETURN_IF_ERROR(Check(cudaDriverGetVersion(&driver), "cudaDriverGetVersion", __LINE__));
    KCHAIN_RETURN_IF_ERROR(
        Check(cudaRuntimeGetVersion(&runtime), "cudaRuntimeGetVersion", __LINE__));
    char buf[512];
    std::snprintf(buf, sizeof buf, "%s (sm_%d%d, driver %d.%d, runtime %d.%d)", prop.name,
                  prop.major, prop.minor, driver / 1000, (driver % 1000) / 10, runtime / 1000,
                  (runtime % 1000) / 10);
    name_ = buf;
    limits_.max_threads_per_block = prop.maxThreadsPerBlock;
    limits_.max_grid_size = prop.maxGridSize[0];
    limits_.total_memory_bytes = prop.totalGlobalMem;
    limits_.max_buffer_bytes = prop.totalGlobalMem;
    return Status();
  }

  DeviceKind kind() const override { return DeviceKind::kCuda; }
  std::string name() const override { return name_; }
  DeviceLimits limits() const override { return limits_; }

  size_t free_memory_bytes() override {
    size_t free = 0, total = 0;
    if (!Activate().ok() || cudaMemGetInfo(&free, &total) != cudaSuccess) return 0;
    return free;
  }

  Status Activate() override {
    // The current device is per thread; remember it to keep this off the hot path.
    thread_local int current = -1;
    if (current == ordinal_) return Status();
    KCHAIN_RETURN_IF_ERROR(Check(cudaSetDevice(ordinal_), "cudaSetDevice", __LINE__));
    current = ordinal_;
    return Status();
  }

  StatusOr<void*> AllocDevice(size_t bytes) override {
    if (bytes == 0) return static_cast<void*>(nullptr);
    void* ptr = nullptr;
    const cudaError_t err = cudaMalloc(&ptr, bytes);
    if (err != cudaSuccess) {
      const std::string what = "cudaMalloc(" + std::to_string(bytes) + " bytes)";
      return Check(err, what.c_str(), __LINE__);
    }
    memory_in_use_.fetch_add(bytes, std::memory_order_relaxed);
    return ptr;
  }

  void FreeDevice(void* ptr, size_t bytes) override {
    if (ptr == nullptr) return;
    // On a broken context this fails; the memory goes with the process.
    (void)cudaFree(ptr);
    memory_in_use_.fetch_sub(bytes, std::memory_order_relaxed);
  }

  StatusOr<void*> AllocPinned(size_t bytes) override {
    if (bytes == 0) return static_cast<void*>(nullptr);
    void* ptr = nullptr;
    const cudaError_t err = cudaHostAlloc(&ptr, bytes, cudaHostAllocPortable);
    if (err != cudaSuccess) {
      const std::string what = "cudaHostAlloc(" + std::to_string(bytes) + " bytes)";
      return Check(err, what.c_str(), __LINE__);
    }
    return ptr;
  }

  void FreePinned(void* ptr) override {
    if (ptr != nullptr) (void)cudaFreeHost(ptr);
  }

  Status RegisterHost(void* ptr, size_t bytes) override {
    return Check(cudaHostRegister(ptr, bytes, cudaHostRegisterPortable), "cudaHostRegister",
                 __LINE__);
  }

  void UnregisterHost(void* ptr) override {
    if (ptr != nullptr) (void)cudaHostUnregister(ptr);
  }

  StatusOr<kchain_stream_t> CreateStream() override {
    cudaStream_t stream = nullptr;
    // A blocking stream (not cudaStreamNonBlocking), on purpose: a launcher that breaks the
    // contract by launching on the legacy default stream is then still ordered with our
    // copies in direct mode, and during capture its launch fails with
    // cudaErrorStreamCaptureImplicit instead of running outside the graph unnoticed.
    // Well-behaved launchers never touch the legacy stream, so this costs them nothing.
    KCHAIN_RETURN_IF_ERROR(Check(cudaStreamCreate(&stream), "cudaStreamCreate", __LINE__));
    return stream;
  }

  void DestroyStream(kchain_stream_t stream) override {
    if (stream != nullptr) (void)cudaStreamDestroy(stream);
  }

  StatusOr<void*> CreateTimer() override {
    cudaEvent_t event = nullptr;
    KCHAIN_RETURN_IF_ERROR(Check(cudaEventCreate(&event), "cudaEventCreate", __LINE__));
    return static_cast<void*>(event);
  }

  void DestroyTimer(void* timer) override {
    if (timer != nullptr) (void)cudaEventDestroy(static_cast<cudaEvent_t>(timer));
  }

  Status RecordTimer(void* timer, kchain_stream_t stream, bool capturing) override {
    auto event = static_cast<cudaEvent_t>(timer);
    if (!capturing) return Check(cudaEventRecord(event, stream), "cudaEventRecord", __LINE__);
    // External: the record becomes an event-record node of the graph, so that graph replays
    // are timed too. (The flag is refused outside a capture.)
    return Check(cudaEventRecordWithFlags(event, stream, cudaEventRecordExternal),
                 "cudaEventRecordWithFlags(cudaEventRecordExternal)", __LINE__);
  }

  double ElapsedUs(void* start, void* end) override {
    float ms = 0;
    if (cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)) !=
        cudaSuccess) {
      (void)cudaGetLastError();
      return 0;
    }
    return static_cast<double>(ms) * 1000.0;
  }

  Status CopyToDeviceAsync(void* dst, const void* src, size_t bytes,
                           kchain_stream_t stream) override {
    if (bytes == 0) return Status();
    return Check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream),
                 "cudaMemcpyAsync(host to device)", __LINE__);
  }

  Status CopyToHostAsync(void* dst, const void* src, size_t bytes,
                         kchain_stream_t stream) override {
    if (bytes == 0) return Status();
    return Check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream),
                 "cudaMemcpyAsync(device to host)", __LINE__);
  }

  Status CheckLaunch() override {
    // cudaGetLastError also clears the (non-sticky) error, so the next run starts clean.
    // Whatever it reports was caused by the launcher that just ran.
    return Check(cudaGetLastError(), "kernel launch", __LINE__, /*kernel_caused=*/true);
  }

  Status Synchronize(kchain_stream_t stream) override {
    return Check(cudaStreamSynchronize(stream), "cudaStreamSynchronize", __LINE__);
  }

  bool SupportsGraphs() const override { return true; }

  Status BeginCapture(kchain_stream_t stream) override {
    // Thread-local: other threads' instances (allocating, capturing) are not disturbed, while
    // this thread's use of the legacy default stream invalidates the capture, which is what
    // detects a launcher that breaks the contract.
    return Check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
                 "cudaStreamBeginCapture", __LINE__);
  }

  StatusOr<void*> EndCapture(kchain_stream_t stream) override {
    cudaGraph_t graph = nullptr;
    const cudaError_t end = cudaStreamEndCapture(stream, &graph);
    // A launcher that broke the capture left its error behind; clear it.
    const cudaError_t pending = cudaGetLastError();
    if (end != cudaSuccess || graph == nullptr) {
      if (graph != nullptr) (void)cudaGraphDestroy(graph);
      return Check(end != cudaSuccess ? end : pending, "cudaStreamEndCapture", __LINE__);
    }
    cudaGraphExec_t exec = nullptr;
    const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
    (void)cudaGraphDestroy(graph);
    KCHAIN_RETURN_IF_ERROR(Check(inst, "cudaGraphInstantiate", __LINE__));
    // Uploading now keeps the one-off cost out of the first replay.
    Status upload = Check(cudaGraphUpload(exec, stream), "cudaGraphUpload", __LINE__);
    if (!upload.ok()) {
      (void)cudaGraphExecDestroy(exec);
      return upload;
    }
    return static_cast<void*>(exec);
  }

  Status LaunchGraph(void* graph, kchain_stream_t stream) override {
    return Check(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph), stream), "cudaGraphLaunch",
                 __LINE__);
  }

  void DestroyGraph(void* graph) override {
    if (graph != nullptr) (void)cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph));
  }

 private:
  // Turns a CUDA error into a status. `kernel_caused` says the error is known to come from a
  // user launcher (reported right after it ran): then it is a kernel error whatever its code.
  // `what` is a C string so that the success path (the hot path) builds nothing.
  Status Check(cudaError_t err, const char* what, int line, bool kernel_caused = false) {
    if (err == cudaSuccess) return Status();
    std::string message = std::string(what) + " failed: " + Describe(err) + " [" + __FILE__ + ":" +
                          std::to_string(line) + "]";
    if (IsStickyError(err)) {
      MarkBroken(message);
      return KernelError(std::move(message));
    }
    if (err == cudaErrorMemoryAllocation) return ResourceExhaustedError(std::move(message));
    if (kernel_caused || IsKernelError(err)) return KernelError(std::move(message));
    if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver ||
        err == cudaErrorDevicesUnavailable || err == cudaErrorInvalidDevice) {
      return UnavailableError(std::move(message));
    }
    return InternalError(std::move(message));
  }

  int ordinal_;
  std::string name_;
  DeviceLimits limits_;
};

}  // namespace

bool CudaCompiledIn() { return true; }

int CudaDeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

StatusOr<std::unique_ptr<Backend>> MakeCudaBackend(int ordinal, GpuWait wait) {
  const int count = CudaDeviceCount();
  if (count == 0) return UnavailableError("no CUDA device is visible to this process");
  if (ordinal < 0 || ordinal >= count) {
    return UnavailableError("CUDA device " + std::to_string(ordinal) + " does not exist (" +
                            std::to_string(count) + " visible)");
  }
  auto backend = std::make_unique<CudaBackend>(ordinal);
  KCHAIN_RETURN_IF_ERROR(backend->Init(wait));
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace kchain::internal
