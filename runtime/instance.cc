// Instance: the run loop. Written once over the backend primitives (runtime/backend.h).
//
// Hot path (RunStaged, graph mode): one graph launch that holds the input copy, every stage
// and the output copy, then one stream synchronization. Direct mode enqueues the same work
// launcher by launcher. Neither allocates: every buffer, stream, timer and the graph are made
// at create/wake time or at the first run.
#include <chrono>
#include <cstdio>
#include <cstring>

#include "kchain/function.h"
#include "runtime/backend.h"
#include "runtime/clock.h"

namespace kchain {
namespace {

using Clock = std::chrono::steady_clock;

// Input sizes may vary from run to run; each new size needs a new capture. Past this many
// captures the chain stays in direct mode rather than re-capturing on every run.
constexpr uint64_t kMaxGraphCaptures = 16;

}  // namespace

std::string_view InstanceStateName(InstanceState state) {
  switch (state) {
    case InstanceState::kResident:
      return "resident";
    case InstanceState::kParked:
      return "parked";
    case InstanceState::kBroken:
      return "broken";
  }
  return "broken";
}

std::string_view ExecModeName(ExecMode mode) {
  return mode == ExecMode::kGraph ? "graph" : "direct";
}

Instance::Instance(std::shared_ptr<const Function> function, InstanceOptions options)
    : function_(std::move(function)), options_(options) {}

StatusOr<std::unique_ptr<Instance>> Instance::Create(std::shared_ptr<const Function> function,
                                                     InstanceOptions options) {
  if (function == nullptr) return InvalidArgumentError("Instance::Create needs a function");
  const auto start = Clock::now();
  std::unique_ptr<Instance> instance(new Instance(std::move(function), options));
  // On failure the destructor releases whatever Initialize() made.
  KCHAIN_RETURN_IF_ERROR(instance->Initialize());
  instance->timings_.create_us = MicrosSince(start);
  return instance;
}

Status Instance::Initialize() {
  internal::Backend& backend = function_->device().backend();
  if (backend.broken()) return UnavailableError("device is broken: " + backend.broken_reason());
  KCHAIN_RETURN_IF_ERROR(backend.Activate());
  KCHAIN_ASSIGN_OR_RETURN(stream_, backend.CreateStream());
  if (options_.stage_timing_period != 0) {
    for (void*& timer : timers_) {
      KCHAIN_ASSIGN_OR_RETURN(timer, backend.CreateTimer());
    }
  }
  if (!options_.external_input_staging.empty() || !options_.external_output_staging.empty()) {
    if (options_.external_input_staging.size() < spec().max_input_bytes ||
        options_.external_output_staging.size() < spec().out_bytes) {
      return InvalidArgumentError("external staging buffers of " +
                                  std::to_string(options_.external_input_staging.size()) + " and " +
                                  std::to_string(options_.external_output_staging.size()) +
                                  " bytes are smaller than the function's input and output (" +
                                  std::to_string(spec().max_input_bytes) + " and " +
                                  std::to_string(spec().out_bytes) + " bytes)");
    }
    owns_staging_ = false;
    input_staging_ = options_.external_input_staging.data();
    output_staging_ = options_.external_output_staging.data();
  } else {
    KCHAIN_ASSIGN_OR_RETURN(void* in, backend.AllocPinned(spec().max_input_bytes));
    input_staging_ = static_cast<std::byte*>(in);
    KCHAIN_ASSIGN_OR_RETURN(void* out, backend.AllocPinned(spec().out_bytes));
    output_staging_ = static_cast<std::byte*>(out);
  }

  kstate_.struct_size = sizeof(kchain_state_t);
  kstate_.abi_version = KCHAIN_ABI_VERSION;
  kstate_.stream = stream_;

  if (!backend.SupportsGraphs()) {
    graph_disabled_ = true;
    graph_status_ = "unsupported: the host backend calls launchers directly";
  } else if (options_.graph == GraphPolicy::kDisabled) {
    graph_disabled_ = true;
    graph_status_ = "disabled by option";
  } else if (options_.debug_sync) {
    graph_disabled_ = true;
    graph_status_ = "disabled: debug_sync launches stage by stage";
  } else {
    graph_status_ = "pending: captured after the first good run";
  }

  KCHAIN_RETURN_IF_ERROR(AllocateDeviceBuffers());
  KCHAIN_RETURN_IF_ERROR(UploadConstants());
  state_ = InstanceState::kResident;
  return Status();
}

Instance::~Instance() {
  internal::Backend& backend = function_->device().backend();
  (void)backend.Activate();
  DropGraph();
  FreeDeviceBuffers();
  if (owns_staging_) {
    backend.FreePinned(input_staging_);
    backend.FreePinned(output_staging_);
  }
  for (void* timer : timers_) {
    if (timer != nullptr) backend.DestroyTimer(timer);
  }
  backend.DestroyStream(stream_);
}

Status Instance::AllocateDeviceBuffers() {
  internal::Backend& backend = function_->device().backend();
  const FunctionSpec& s = spec();
  const auto start = Clock::now();
  struct Want {
    kchain_buf_t* buf;
    size_t bytes;
  };
  const Want wants[] = {{&kstate_.input, s.max_input_bytes},
                        {&kstate_.constant, s.constant_bytes},
                        {&kstate_.tmp, s.tmp_bytes},
                        {&kstate_.out, s.out_bytes}};
  for (const Want& want : wants) {
    auto ptr = backend.AllocDevice(want.bytes);
    if (!ptr.ok()) {
      FreeDeviceBuffers();
      return ptr.status().WithContext("allocating instance buffers");
    }
    want.buf->dat = static_cast<uint8_t*>(*ptr);
    want.buf->len = want.bytes;
    device_bytes_ += want.bytes;
  }
  kstate_.input.len = 0;  // set per run to that run's input length
  timings_.alloc_us = MicrosSince(start);
  return Status();
}

void Instance::FreeDeviceBuffers() {
  internal::Backend& backend = function_->device().backend();
  const size_t capacities[] = {spec().max_input_bytes, spec().constant_bytes, spec().tmp_bytes,
                               spec().out_bytes};
  kchain_buf_t* bufs[] = {&kstate_.input, &kstate_.constant, &kstate_.tmp, &kstate_.out};
  for (int i = 0; i < 4; ++i) {
    if (bufs[i]->dat != nullptr) backend.FreeDevice(bufs[i]->dat, capacities[i]);
    *bufs[i] = kchain_buf_t{nullptr, 0};
  }
  device_bytes_ = 0;
}

Status Instance::UploadConstants() {
  const auto constants = function_->constants();
  if (constants.empty()) return Status();
  internal::Backend& backend = function_->device().backend();
  const auto start = Clock::now();
  Status status =
      backend.CopyToDeviceAsync(kstate_.constant.dat, constants.data(), constants.size(), stream_);
  if (status.ok()) status = backend.Synchronize(stream_);
  if (!status.ok()) {
    FreeDeviceBuffers();
    return status.WithContext("uploading constants");
  }
  ++stats_.constant_uploads;
  timings_.constants_upload_us = MicrosSince(start);
  return Status();
}

void Instance::DropGraph() {
  internal::Backend& backend = function_->device().backend();
  if (graph_ != nullptr) backend.DestroyGraph(graph_);
  if (timed_graph_ != nullptr) backend.DestroyGraph(timed_graph_);
  graph_ = timed_graph_ = nullptr;
  graph_input_bytes_ = 0;
}

ExecMode Instance::exec_mode() const {
  return graph_ != nullptr ? ExecMode::kGraph : ExecMode::kDirect;
}

Status Instance::CheckRunnable() const {
  const internal::Backend& backend = function_->device().backend();
  if (state_ == InstanceState::kBroken || backend.broken()) {
    return UnavailableError("instance is broken: the device faulted earlier (" +
                            backend.broken_reason() + "); replace the process to recover");
  }
  if (state_ == InstanceState::kParked) {
    return FailedPreconditionError("instance is parked; Wake() it before running");
  }
  return Status();
}

Status Instance::Run(std::span<const std::byte> input, std::span<std::byte> output,
                     RunTimings* timings) {
  const auto start = Clock::now();
  if (input.size() > spec().max_input_bytes) {
    return PayloadTooLargeError("input is " + std::to_string(input.size()) +
                                " bytes; the function accepts at most " +
                                std::to_string(spec().max_input_bytes));
  }
  if (output.size() < spec().out_bytes) {
    return InvalidArgumentError("output buffer holds " + std::to_string(output.size()) +
                                " bytes; the function returns " + std::to_string(spec().out_bytes));
  }
  KCHAIN_RETURN_IF_ERROR(CheckRunnable());
  if (!input.empty()) std::memcpy(input_staging_, input.data(), input.size());
  KCHAIN_RETURN_IF_ERROR(RunStaged(input.size(), timings));
  std::memcpy(output.data(), output_staging_, spec().out_bytes);
  if (timings != nullptr) timings->total_us = MicrosSince(start);
  return Status();
}

Status Instance::RunStaged(size_t input_bytes, RunTimings* timings) {
  const auto start = Clock::now();
  KCHAIN_RETURN_IF_ERROR(CheckRunnable());
  if (input_bytes > spec().max_input_bytes) {
    return PayloadTooLargeError("input is " + std::to_string(input_bytes) +
                                " bytes; the function accepts at most " +
                                std::to_string(spec().max_input_bytes));
  }
  internal::Backend& backend = function_->device().backend();
  Status status = backend.Activate();
  if (!status.ok()) return FailRun(std::move(status));

  kstate_.input.len = input_bytes;
  const uint32_t period = options_.stage_timing_period;
  const bool timed = period != 0 && run_counter_++ % period == 0;
  bool replay = graph_ != nullptr && graph_input_bytes_ == input_bytes;
  if (replay) {
    status = backend.LaunchGraph(timed ? timed_graph_ : graph_, stream_);
    if (!status.ok() && !backend.broken()) {
      // A graph that no longer launches is dropped for good; this run goes direct instead.
      DropGraph();
      graph_disabled_ = true;
      graph_status_ = "disabled: graph launch failed: " + status.ToString();
      replay = false;
      status = EnqueueChain(input_bytes, /*capturing=*/false, timed);
    }
  } else {
    status = EnqueueChain(input_bytes, /*capturing=*/false, timed);
  }
  if (!status.ok()) return FailRun(std::move(status));

  status = backend.Synchronize(stream_);
  if (!status.ok()) {
    return FailRun(status.WithContext(
        "chain " + ChainToString(spec()) + " failed on the device" +
        (options_.debug_sync ? "" : " (run with debug_sync to name the faulting kernel)")));
  }

  ++stats_.runs;
  if (replay) ++stats_.graph_runs;
  if (timed) ++stats_.timed_runs;
  if (timings != nullptr) {
    timings->mode = replay ? ExecMode::kGraph : ExecMode::kDirect;
    timings->stages_timed = timed;
    if (timed) {
      ReadStageTimings(timings);
    } else {
      timings->input_copy_us = timings->chain_us = timings->output_copy_us = 0;
    }
  }
  if (!replay && !graph_disabled_) {
    if (stats_.graph_captures >= kMaxGraphCaptures) {
      graph_disabled_ = true;
      graph_status_ = "disabled: the input size changed too often to keep re-capturing";
    } else {
      // Failure to capture only disables graphs; the run itself has succeeded.
      (void)CaptureGraph(input_bytes);
    }
  }
  if (timings != nullptr) timings->total_us = MicrosSince(start);
  return Status();
}

Status Instance::EnqueueChain(size_t input_bytes, bool capturing, bool timed) {
  internal::Backend& backend = function_->device().backend();
  if (timed) KCHAIN_RETURN_IF_ERROR(backend.RecordTimer(timers_[0], stream_, capturing));
  KCHAIN_RETURN_IF_ERROR(
      backend.CopyToDeviceAsync(kstate_.input.dat, input_staging_, input_bytes, stream_));
  if (timed) KCHAIN_RETURN_IF_ERROR(backend.RecordTimer(timers_[1], stream_, capturing));

  const auto& chain = spec().chain;
  const auto& launchers = function_->launchers();
  std::atomic<uint32_t>* progress = options_.stage_progress;
  for (size_t i = 0; i < chain.size(); ++i) {
    kstate_.error_code = 0;
    kstate_.error_message[0] = '\0';
    if (progress != nullptr)
      progress->store(static_cast<uint32_t>(i + 1), std::memory_order_relaxed);
    launchers[i](&kstate_, chain[i].grid, chain[i].block);
    if (kstate_.error_code != 0) {
      kstate_.error_message[KCHAIN_ERROR_MESSAGE_SIZE - 1] = '\0';  // untrusted: terminate
      return KernelError("kernel '" + chain[i].kernel + "' (stage " + std::to_string(i + 1) +
                         " of " + std::to_string(chain.size()) + ", library '" +
                         function_->library().path() + "') reported error " +
                         std::to_string(kstate_.error_code) + ": " + kstate_.error_message);
    }
    Status launch = backend.CheckLaunch();
    if (options_.debug_sync && !capturing && launch.ok()) launch = backend.Synchronize(stream_);
    if (!launch.ok()) {
      return launch.WithContext("kernel '" + chain[i].kernel + "' (stage " + std::to_string(i + 1) +
                                " of " + std::to_string(chain.size()) + ", library '" +
                                function_->library().path() + "')");
    }
  }

  if (progress != nullptr) progress->store(0, std::memory_order_relaxed);
  if (timed) KCHAIN_RETURN_IF_ERROR(backend.RecordTimer(timers_[2], stream_, capturing));
  KCHAIN_RETURN_IF_ERROR(
      backend.CopyToHostAsync(output_staging_, kstate_.out.dat, spec().out_bytes, stream_));
  if (timed) KCHAIN_RETURN_IF_ERROR(backend.RecordTimer(timers_[3], stream_, capturing));
  return Status();
}

StatusOr<void*> Instance::CaptureOne(size_t input_bytes, bool timed) {
  internal::Backend& backend = function_->device().backend();
  KCHAIN_RETURN_IF_ERROR(backend.BeginCapture(stream_));
  Status status = EnqueueChain(input_bytes, /*capturing=*/true, timed);
  // Always end the capture, also when enqueueing failed, so the stream is usable again.
  auto graph = backend.EndCapture(stream_);
  if (!status.ok()) {
    if (graph.ok()) backend.DestroyGraph(*graph);
    return status;
  }
  return graph;
}

Status Instance::CaptureGraph(size_t input_bytes) {
  const auto start = Clock::now();
  DropGraph();
  auto graph = CaptureOne(input_bytes, /*timed=*/false);
  Status status = graph.status();
  if (graph.ok()) {
    graph_ = *graph;
    if (options_.stage_timing_period != 0) {
      auto timed = CaptureOne(input_bytes, /*timed=*/true);
      status = timed.status();
      if (timed.ok()) timed_graph_ = *timed;
    }
  }
  if (!status.ok()) {
    DropGraph();
    graph_disabled_ = true;
    graph_status_ = "disabled: capture failed, launching directly: " + status.ToString();
    return status;
  }
  graph_input_bytes_ = input_bytes;
  ++stats_.graph_captures;
  graph_status_ = "captured";
  timings_.graph_capture_us = MicrosSince(start);
  return Status();
}

void Instance::ReadStageTimings(RunTimings* timings) const {
  internal::Backend& backend = function_->device().backend();
  timings->input_copy_us = backend.ElapsedUs(timers_[0], timers_[1]);
  timings->chain_us = backend.ElapsedUs(timers_[1], timers_[2]);
  timings->output_copy_us = backend.ElapsedUs(timers_[2], timers_[3]);
}

Status Instance::FailRun(Status status) {
  ++stats_.failed_runs;
  internal::Backend& backend = function_->device().backend();
  // Let whatever was already enqueued drain before the caller reuses the staging buffers.
  if (!backend.broken()) (void)backend.Synchronize(stream_);
  if (backend.broken()) {
    state_ = InstanceState::kBroken;
    DropGraph();
    return KernelError(status.message() +
                       "; the device context is unusable now: this instance and its device are "
                       "marked broken");
  }
  return status;
}

Status Instance::Park() {
  if (state_ == InstanceState::kBroken) return CheckRunnable();
  if (state_ == InstanceState::kParked) return Status();
  (void)function_->device().backend().Activate();
  DropGraph();
  FreeDeviceBuffers();
  state_ = InstanceState::kParked;
  if (!graph_disabled_) graph_status_ = "pending: captured after the first good run";
  ++stats_.parks;
  return Status();
}

Status Instance::Wake() {
  if (state_ == InstanceState::kResident) return Status();
  internal::Backend& backend = function_->device().backend();
  if (state_ == InstanceState::kBroken || backend.broken()) {
    state_ = InstanceState::kBroken;
    return CheckRunnable();
  }
  const auto start = Clock::now();
  KCHAIN_RETURN_IF_ERROR(backend.Activate());
  KCHAIN_RETURN_IF_ERROR(AllocateDeviceBuffers());
  KCHAIN_RETURN_IF_ERROR(UploadConstants());
  state_ = InstanceState::kResident;
  run_counter_ = 0;  // the first run after a wake is a warm start: always time its stages
  ++stats_.wakes;
  timings_.wake_us = MicrosSince(start);
  return Status();
}

}  // namespace kchain
