// Function and Instance: a loaded function, and the instances that run it.
//
// A Function binds a Library, a validated FunctionSpec and the constant blob (kept in pinned
// host memory, shared by all its instances) to one Device. An Instance is one runnable copy of
// it on the device: device buffers (input, constant, tmp, out), a stream, pinned staging
// buffers, and, after the first good run, a captured CUDA graph. PyPlover calls an instance a
// container.
//
// Lifecycle of an instance (start types as in docs/design):
//   Create() ---------> resident --Run()--> resident          (first run: cold; later: hot)
//                         |  ^
//                    Park()  Wake()                            (run after Wake: warm)
//                         v  |
//                        parked
//   any sticky device fault -> broken (terminal; the device is broken too)
//
// Thread-safety: Function is immutable after Create and safe to share between threads.
// An Instance must be used by one thread at a time (it owns one stream and one set of
// buffers); distinct instances, of the same function or not, may run concurrently from
// distinct threads, each on its own stream.
#ifndef KCHAIN_FUNCTION_H_
#define KCHAIN_FUNCTION_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kchain/device.h"
#include "kchain/function_spec.h"
#include "kchain/kernel.h"
#include "kchain/library.h"
#include "kchain/status.h"

namespace kchain {

class Function {
 public:
  // Validates `spec` against `device`, checks that `library` targets `device`, resolves every
  // kernel of the chain, and copies `constants` into pinned host memory. `constants` must be
  // exactly spec.constant_bytes long. Errors: kInvalidArgument (bad spec, wrong target,
  // constant size mismatch), kNotFound (a kernel is not exported, naming it and the file),
  // kResourceExhausted (pinned memory), kUnavailable (device broken).
  static StatusOr<std::shared_ptr<const Function>> Create(std::shared_ptr<Device> device,
                                                          std::shared_ptr<const Library> library,
                                                          FunctionSpec spec,
                                                          std::span<const std::byte> constants);

  ~Function();
  Function(const Function&) = delete;
  Function& operator=(const Function&) = delete;

  const FunctionSpec& spec() const { return spec_; }
  const Library& library() const { return *library_; }
  Device& device() const { return *device_; }
  const std::shared_ptr<Device>& shared_device() const { return device_; }
  // The launcher of each stage, in chain order.
  const std::vector<kchain_kernel_fn>& launchers() const { return launchers_; }
  // The constant blob in pinned host memory (empty when there is none).
  std::span<const std::byte> constants() const { return {constants_, spec_.constant_bytes}; }
  // Time to copy the constants into pinned host memory.
  std::chrono::nanoseconds constants_staging_duration() const { return staging_duration_; }

 private:
  Function() = default;

  std::shared_ptr<Device> device_;
  std::shared_ptr<const Library> library_;
  FunctionSpec spec_;
  std::vector<kchain_kernel_fn> launchers_;
  std::byte* constants_ = nullptr;
  std::chrono::nanoseconds staging_duration_{0};
};

enum class InstanceState {
  kResident,  // device buffers allocated, constants uploaded: runs at once (hot)
  kParked,    // device memory released, constants kept in pinned host memory (warm)
  kBroken,    // a sticky device fault; nothing more can run
};
std::string_view InstanceStateName(InstanceState state);

enum class ExecMode {
  kDirect,  // each launcher is called on every run
  kGraph,   // the chain, with its copies, is replayed from a captured CUDA graph
};
std::string_view ExecModeName(ExecMode mode);

enum class GraphPolicy {
  kAuto,      // capture after the first good run; fall back to direct when capture fails
  kDisabled,  // always launch directly
};

struct InstanceOptions {
  GraphPolicy graph = GraphPolicy::kAuto;
  // Synchronize and check for errors after every stage, so that an asynchronous device fault
  // names the kernel that caused it. Slow; implies direct launches.
  bool debug_sync = false;
  // Device-side timing of the input copy, the chain and the output copy (CUDA events; the host
  // clock on the host backend) is taken on the first run after Create() or Wake() (cold and
  // warm starts) and then on every Nth run, N being
  // this period; 1 times every run, 0 none. On an H100 it costs about 6 us a run in direct
  // mode and 14 us in graph mode (event nodes in the graph), so it is sampled by default.
  // RunTimings::stages_timed says whether a given run was timed. The total is always timed.
  uint32_t stage_timing_period = 64;
  // Host buffers to use as the input and output staging instead of allocating them: at least
  // spec.max_input_bytes and spec.out_bytes long, valid for the instance's whole life. This is
  // how a worker process runs straight out of shared memory. On CUDA, register them first
  // (Device::RegisterHostMemory) so that the copies run at pinned speed.
  std::span<std::byte> external_input_staging;
  std::span<std::byte> external_output_staging;
  // When set, the runtime stores i + 1 here (relaxed) just before calling stage i's launcher
  // and 0 after the chain, so that whoever watches a process that died inside a launcher
  // can name the kernel.
  std::atomic<uint32_t>* stage_progress = nullptr;
};

// Where one run's time went, in microseconds.
struct RunTimings {
  ExecMode mode = ExecMode::kDirect;
  bool stages_timed = false;  // whether the three stage figures below were measured
  double input_copy_us = 0;   // host-to-device copy of the input
  double chain_us = 0;        // all stages of the chain
  double output_copy_us = 0;  // device-to-host copy of `out`
  double total_us = 0;        // wall time of the whole Run call, staging copies included
};

// One-off costs of an instance, in microseconds (PyPlover's "load constants" and friends).
struct InstanceTimings {
  double create_us = 0;            // Create(), everything included
  double alloc_us = 0;             // last device buffer allocation (create or wake)
  double constants_upload_us = 0;  // last constant upload (create or wake)
  double wake_us = 0;              // last Wake(), everything included
  double graph_capture_us = 0;     // last graph capture and instantiation
};

struct InstanceStats {
  uint64_t runs = 0;              // successful runs
  uint64_t timed_runs = 0;        // successful runs with stage timings
  uint64_t failed_runs = 0;       // runs that returned an error
  uint64_t graph_runs = 0;        // successful runs replayed from a graph
  uint64_t constant_uploads = 0;  // constant uploads (1 per create and per wake)
  uint64_t parks = 0;
  uint64_t wakes = 0;
  uint64_t graph_captures = 0;  // successful captures
};

class Instance {
 public:
  // Creates a stream, allocates pinned staging for input and output, allocates the device
  // buffers and uploads the constants. Errors: kResourceExhausted (out of device or pinned
  // memory), kUnavailable (device broken), kInternal (other device errors).
  static StatusOr<std::unique_ptr<Instance>> Create(std::shared_ptr<const Function> function,
                                                    InstanceOptions options = {});

  // Releases everything. Never fails; errors from a broken device are ignored.
  ~Instance();
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  // Copies `input` into the input staging buffer, runs the chain and copies `out` into
  // `output` (which must be at least spec().out_bytes long). See RunStaged() for errors.
  Status Run(std::span<const std::byte> input, std::span<std::byte> output,
             RunTimings* timings = nullptr);

  // The zero-copy form: the caller has written `input_bytes` bytes at the start of
  // input_staging(); the result lands in output_staging(). Runs the chain with one host
  // synchronization at the end and no allocation once the first run is done. Errors:
  //  - kPayloadTooLarge: input_bytes > spec.max_input_bytes;
  //  - kFailedPrecondition: the instance is parked;
  //  - kUnavailable: the instance or its device is broken;
  //  - kKernelError: a launcher reported an error, a launch failed, or the device faulted
  //    during the chain. The message names the kernel where it can be known (always for
  //    launcher-reported errors and launch failures; for asynchronous faults only with
  //    debug_sync). After a sticky fault the instance and the device are marked broken.
  Status RunStaged(size_t input_bytes, RunTimings* timings = nullptr);

  // Pinned host buffers owned by the instance; stable for its lifetime (across park/wake).
  std::span<std::byte> input_staging() const { return {input_staging_, spec().max_input_bytes}; }
  std::span<const std::byte> output_staging() const { return {output_staging_, spec().out_bytes}; }

  // Frees the device buffers (and the captured graph) but keeps the stream and staging
  // buffers; the constants stay in the Function's pinned host memory. No-op when parked.
  // kUnavailable when broken.
  Status Park();
  // Re-allocates the device buffers and re-uploads the constants. No-op when resident.
  // Errors as for Create(); kUnavailable when broken.
  Status Wake();

  InstanceState state() const { return state_; }
  // The mode the next run will use.
  ExecMode exec_mode() const;
  // Why the instance is (or is not yet) in graph mode, e.g. "captured",
  // "pending: captured after the first good run", "disabled: capture failed: ...".
  const std::string& graph_status() const { return graph_status_; }
  // Device bytes held now (0 when parked).
  size_t device_bytes() const { return device_bytes_; }

  const InstanceStats& stats() const { return stats_; }
  const InstanceTimings& timings() const { return timings_; }
  const InstanceOptions& options() const { return options_; }
  const Function& function() const { return *function_; }
  const FunctionSpec& spec() const { return function_->spec(); }

 private:
  explicit Instance(std::shared_ptr<const Function> function, InstanceOptions options);

  Status Initialize();
  Status AllocateDeviceBuffers();
  void FreeDeviceBuffers();
  Status UploadConstants();
  // Enqueues the input copy, every launcher and the output copy (or, on the host backend,
  // does the work). `capturing` says whether a graph capture is in progress, `timed` whether
  // to record the stage timers.
  Status EnqueueChain(size_t input_bytes, bool capturing, bool timed);
  // Captures the chain into graph_ and, when stage timing is on, into timed_graph_.
  Status CaptureGraph(size_t input_bytes);
  StatusOr<void*> CaptureOne(size_t input_bytes, bool timed);
  void DropGraph();
  // Turns a failed run into the status returned to the caller and updates the state.
  Status FailRun(Status status);
  Status CheckRunnable() const;
  void ReadStageTimings(RunTimings* timings) const;

  std::shared_ptr<const Function> function_;
  InstanceOptions options_;
  InstanceState state_ = InstanceState::kParked;

  kchain_state_t kstate_{};
  kchain_stream_t stream_ = nullptr;
  // Timer handles (CUDA events or host timestamps): before the input copy, after it, after
  // the chain, after the output copy.
  static constexpr int kTimerCount = 4;
  void* timers_[kTimerCount] = {};

  std::byte* input_staging_ = nullptr;
  std::byte* output_staging_ = nullptr;
  bool owns_staging_ = true;
  size_t device_bytes_ = 0;

  // Graph replay state: the chain with and without stage timers (backend graph handles).
  void* graph_ = nullptr;
  void* timed_graph_ = nullptr;
  size_t graph_input_bytes_ = 0;
  bool graph_disabled_ = false;
  std::string graph_status_;

  uint64_t run_counter_ = 0;  // attempts, for sampling stage timings
  InstanceStats stats_;
  InstanceTimings timings_;
};

}  // namespace kchain

#endif  // KCHAIN_FUNCTION_H_
