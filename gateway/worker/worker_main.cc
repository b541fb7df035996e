// kchain-worker: hosts the instances of one scope (by default one tenant) on one device, in
// its own process with its own device context, for the gateway (--isolation=process). Started
// by the gateway, never by hand: it speaks the protocol in protocol.h on fd 3.
//
// Life: sandbox step 1 (network namespace, working directory, limits) -> open the device
// (a CUDA context: the slow part, done before any tenant is known, so that a pool of these
// can wait ready) -> seccomp -> READY -> the first LOAD binds it to its scope for good ->
// LOAD / UNLOAD / CREATE ... -> EXIT, or death, which the gateway reports and replaces.
//
// Threads: the main thread serves control messages, one at a time; every instance has a
// thread of its own that serves its control page (runs, park, wake, destroy), so instances
// run at the same time and loading a function never stalls the ones running.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "gateway/worker/protocol.h"
#include "gateway/worker/sandbox.h"
#include "kchain/function.h"
#include "kchain/manifest.h"
#include "runtime/clock.h"
#include "runtime/unique_fd.h"

namespace kchain::worker {
namespace {

using Clock = std::chrono::steady_clock;

uint64_t ResidentBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  unsigned long long pages_total = 0, pages_resident = 0;
  if (f != nullptr) {
    if (std::fscanf(f, "%llu %llu", &pages_total, &pages_resident) != 2) pages_resident = 0;
    std::fclose(f);
  }
  return pages_resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

struct Options {
  std::string device = "auto";
  int ordinal = 0;
  int device_connections = 0;  // CUDA_DEVICE_MAX_CONNECTIONS for this process; 0: CUDA's own
  DeviceOptions device_options;
  SandboxOptions sandbox;
};

// One instance: its shared memory (control page, input, output), the runtime's Instance, and
// the thread that serves its control page until it is destroyed.
class InstanceHost {
 public:
  InstanceHost(MappedRegion mapping, Device::HostRegistration registration,
               std::unique_ptr<Instance> instance, std::shared_ptr<Device> device,
               uint32_t request_spin_us, bool spin_yield)
      : mapping_(std::move(mapping)),
        shm_(mapping_.data()),
        registration_(std::move(registration)),
        instance_(std::move(instance)),
        device_(std::move(device)),
        request_spin_us_(request_spin_us),
        spin_yield_(spin_yield) {}

  ~InstanceHost() {
    if (thread_.joinable()) thread_.join();
    instance_.reset();
    registration_ = Device::HostRegistration();  // unregistered before it is unmapped
    mapping_.reset();
  }

  void Start() {
    thread_ = std::thread([this] { Serve(); });
  }
  bool finished() const { return finished_.load(std::memory_order_acquire); }

 private:
  std::atomic<uint32_t>& Word(size_t offset) { return PageWord(shm_, offset); }

  // The next request's sequence number: spins a while, then sleeps on the futex.
  uint32_t WaitForRequest(uint32_t handled) {
    auto& requested = Word(kControlRequestSequenceOffset);
    auto& sleeping = Word(kControlWorkerSleepingOffset);
    const auto spin_until = Clock::now() + std::chrono::microseconds(request_spin_us_);
    do {
      const uint32_t seq = requested.load(std::memory_order_acquire);
      if (seq != handled) return seq;
      SpinPause(spin_yield_);
    } while (request_spin_us_ != 0 && Clock::now() < spin_until);
    while (true) {
      sleeping.store(1, std::memory_order_seq_cst);
      const uint32_t seq = requested.load(std::memory_order_seq_cst);
      if (seq != handled) {
        sleeping.store(0, std::memory_order_relaxed);
        return seq;
      }
      FutexWait(&requested, handled, -1);
    }
  }

  void Serve() {
    // The page starts zeroed and the gateway's first request is 1 (never 0): a request posted
    // before this thread got here is still seen as new.
    uint32_t handled = 0;
    while (true) {
      const uint32_t seq = WaitForRequest(handled);
      handled = seq;
      const auto op =
          static_cast<Op>(Word(kControlRequestOpOffset).load(std::memory_order_relaxed));
      const uint64_t bytes =
          PageWord64(shm_, kControlRequestBytesOffset).load(std::memory_order_relaxed);
      RanBody ran{};
      ran.sequence = seq;
      ran.op = static_cast<uint32_t>(op);
      Status status;
      switch (op) {
        case Op::kRun: {
          RunTimings timings;
          status = instance_->RunStaged(bytes, &timings);
          ran.mode = static_cast<uint32_t>(timings.mode);
          ran.stages_timed = timings.stages_timed;
          ran.input_copy_us = timings.input_copy_us;
          ran.chain_us = timings.chain_us;
          ran.output_copy_us = timings.output_copy_us;
          ran.total_us = timings.total_us;
          break;
        }
        case Op::kPark:
          status = instance_->Park();
          break;
        case Op::kWake:
          status = instance_->Wake();
          if (status.ok()) {
            ran.upload_us = instance_->timings().constants_upload_us;
            ran.create_us = instance_->timings().wake_us - ran.upload_us;
          }
          break;
        case Op::kDestroy:
          instance_.reset();  // frees its device memory before the reply says so
          break;
        default:
          status = InternalError("unknown request " + std::to_string(static_cast<uint32_t>(op)));
      }
      ran.status_code = static_cast<uint32_t>(status.code());
      // A broken device context cannot be recovered in this process: report, then exit.
      ran.broken = device_->broken() ||
                   (instance_ != nullptr && instance_->state() == InstanceState::kBroken);
      Reply(ran, status);
      if (ran.broken) ::_exit(3);
      if (op == Op::kDestroy) break;
    }
    finished_.store(true, std::memory_order_release);
  }

  // The reply goes to the control page; a gateway thread sleeping on it is woken.
  void Reply(const RanBody& ran, const Status& status) {
    const std::string& message = status.message();
    const size_t text = std::min(message.size(), kControlPageBytes - kControlMessageOffset - 1);
    std::memcpy(shm_ + kControlMessageOffset, message.data(), text);
    shm_[kControlMessageOffset + text] = std::byte{0};
    std::memcpy(shm_ + kControlReplyOffset, &ran, sizeof ran);
    auto& replied = Word(kControlReplySequenceOffset);
    replied.store(ran.sequence, std::memory_order_seq_cst);
    if (Word(kControlGatewayWaitingOffset).load(std::memory_order_seq_cst) != 0) {
      FutexWake(&replied);
    }
  }

  MappedRegion mapping_;
  std::byte* shm_;  // mapping_'s bytes: the control page, then input and output
  Device::HostRegistration registration_;
  std::unique_ptr<Instance> instance_;
  std::shared_ptr<Device> device_;
  uint32_t request_spin_us_;
  bool spin_yield_;
  std::atomic<bool> finished_{false};
  std::thread thread_;
};

class Worker {
 public:
  explicit Worker(const Options& options)
      : options_(options), channel_(kWorkerSocketFd), parent_(::getppid()) {}

  int Run() {
    ReadyBody ready{};
    std::string notes;
    ready.sandbox = ApplyEarlySandbox(options_.sandbox, &notes);
    const auto start = Clock::now();
    auto device = OpenDevice();
    if (!device.ok()) return ReportAndExit(device.status());
    device_ = *device;
    ready.init_us = MicrosSince(start);
    if (options_.sandbox.enabled && device_->kind() == DeviceKind::kHost &&
        options_.sandbox.address_space_headroom != 0) {
      LimitAddressSpace(options_.sandbox.address_space_headroom, &notes);
    }
    if (DropPrivileges(options_.sandbox, &notes)) ready.sandbox |= kSandboxUser;
    // Changing credentials clears the parent-death signal: set it again, and leave if the
    // gateway died meanwhile (then this process was re-parented already).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent_) ::_exit(1);
    if (options_.sandbox.enabled && ApplySeccomp(&notes)) ready.sandbox |= kSandboxSeccomp;

    ready.protocol_version = kProtocolVersion;
    ready.pid = static_cast<uint32_t>(::getpid());
    ready.device_kind = static_cast<uint32_t>(device_->kind());
    ready.max_threads_per_block = device_->limits().max_threads_per_block;
    ready.max_grid_size = device_->limits().max_grid_size;
    ready.total_memory_bytes = device_->limits().total_memory_bytes;
    ready.max_buffer_bytes = device_->limits().max_buffer_bytes;
    ready.free_memory_bytes = device_->free_memory_bytes();
    ready.baseline_rss_bytes = ResidentBytes();
    std::snprintf(ready.device_name, sizeof ready.device_name, "%s", device_->name().c_str());
    std::snprintf(ready.sandbox_notes, sizeof ready.sandbox_notes, "%s", notes.c_str());
    if (!channel_.Send(MessageType::kReady, &ready, sizeof ready).ok()) return 1;

    while (true) {
      std::vector<int> fds;
      Status received = channel_.Receive(-1, &fds);
      if (!received.ok()) {
        // The gateway is gone: leave at once. (Returning would run destructors that join
        // instances' threads, which sleep until a request that will never come.)
        if (received.code() == StatusCode::kUnavailable) ::_exit(0);
        continue;  // a malformed message: nothing to answer
      }
      request_id_ = channel_.request_id();
      ReapFinishedInstances();
      Status handled;
      switch (channel_.type()) {
        case MessageType::kLoad:
          handled = HandleLoad(fds);
          break;
        case MessageType::kUnload:
          handled = HandleUnload();
          break;
        case MessageType::kCreate:
          handled = HandleCreate(fds);
          break;
        case MessageType::kExit:
          // Instances' threads may be mid-wait: leave without running destructors.
          ::_exit(0);
        default:
          handled = SendError(InternalError("unexpected message"));
      }
      for (int fd : fds) ::close(fd);  // whatever a handler did not keep
      if (!handled.ok() || exit_after_reply_) ::_exit(exit_after_reply_ ? 3 : 1);
    }
  }

 private:
  StatusOr<std::shared_ptr<Device>> OpenDevice() {
    if (options_.device == "auto") {
      if (Device::CudaDeviceCount() > options_.ordinal) {
        return Device::Open(DeviceKind::kCuda, options_.ordinal, options_.device_options);
      }
      return Device::Open(DeviceKind::kHost);
    }
    KCHAIN_ASSIGN_OR_RETURN(DeviceKind kind, ParseDeviceKind(options_.device));
    return Device::Open(kind, kind == DeviceKind::kCuda ? options_.ordinal : 0,
                        options_.device_options);
  }

  int ReportAndExit(const Status& status) {
    std::fprintf(stderr, "kchain-worker: %s\n", status.ToString().c_str());
    (void)SendError(status);
    return 2;
  }

  Status SendError(const Status& status) {
    ErrorBody body{static_cast<uint32_t>(status.code()), device_ != nullptr && device_->broken()};
    if (body.broken) exit_after_reply_ = true;
    return channel_.Send(MessageType::kError, &body, sizeof body, status.message(), {},
                         request_id_);
  }

  Status Send(MessageType type, const void* body, size_t bytes) {
    return channel_.Send(type, body, bytes, {}, {}, request_id_);
  }

  // LOAD: fds are [library, manifest, constants if any].
  Status HandleLoad(std::vector<int>& fds) {
    LoadBody load{};
    if (!channel_.CopyBody(&load)) return SendError(InternalError("malformed LOAD"));
    if (fds.size() != (load.has_constants ? 3u : 2u)) {
      return SendError(InternalError("LOAD came with the wrong fds"));
    }
    LoadedBody loaded{};
    loaded.function_id = load.function_id;
    if (functions_.count(load.function_id) != 0)
      return Send(MessageType::kLoaded, &loaded, sizeof loaded);
    auto manifest_text = ReadWholeFd(fds[1], kMaxManifestBytes, "the manifest");
    if (!manifest_text.ok()) return SendError(manifest_text.status());
    auto manifest = ParseManifest(*manifest_text);
    if (!manifest.ok()) return SendError(manifest.status());

    // The library arrives as an fd the gateway opened read-only (this process never needs,
    // nor may read, the gateway's data directory). The loader copies its bytes into a sealed
    // memory file of this process's own and loads that: reopening the fd by its /proc path
    // would check the stored file's permissions again, which an unprivileged worker fails.
    // Messages name it /proc/self/fd/N; the gateway puts the stored path in its place.
    auto library =
        Library::OpenFd(fds[0], "/proc/self/fd/" + std::to_string(fds[0]), device_->kind());
    if (!library.ok()) return SendError(library.status());
    loaded.library_us =
        std::chrono::duration<double, std::micro>((*library)->load_duration()).count();

    const auto constants_start = Clock::now();
    std::string constants;
    if (load.has_constants) {
      auto read = ReadWholeFd(fds[2], manifest->spec.constant_bytes, "the constants");
      if (!read.ok()) return SendError(read.status());
      constants = std::move(*read);
    }
    auto function = Function::Create(device_, *library, manifest->spec,
                                     std::as_bytes(std::span(constants.data(), constants.size())));
    if (!function.ok()) return SendError(function.status());
    loaded.constants_us = MicrosSince(constants_start);
    functions_[load.function_id] = *function;
    return Send(MessageType::kLoaded, &loaded, sizeof loaded);
  }

  Status HandleUnload() {
    UnloadBody unload{};
    if (!channel_.CopyBody(&unload)) return SendError(InternalError("malformed UNLOAD"));
    // Instances hold the function too: it goes when the last of them does.
    functions_.erase(unload.function_id);
    return Send(MessageType::kUnloaded, nullptr, 0);
  }

  // CREATE: fds are [the instance's shared memory].
  Status HandleCreate(std::vector<int>& fds) {
    CreateBody body{};
    if (!channel_.CopyBody(&body) || fds.size() != 1) {
      return SendError(InternalError("malformed CREATE"));
    }
    const auto found = functions_.find(body.function_id);
    if (found == functions_.end()) {
      return SendError(FailedPreconditionError("function " + std::to_string(body.function_id) +
                                               " is not loaded in this worker"));
    }
    const std::shared_ptr<const Function>& function = found->second;
    const FunctionSpec& spec = function->spec();
    if (body.input_offset < kControlPageBytes ||
        body.input_offset + spec.max_input_bytes > body.shm_bytes ||
        body.output_offset + spec.out_bytes > body.shm_bytes) {
      return SendError(InternalError("the shared memory does not fit the function"));
    }
    MappedRegion mapping = MappedRegion::MapShared(fds[0], body.shm_bytes);
    if (!mapping.valid()) {
      return SendError(ResourceExhaustedError(std::string("mmap of the shared memory: ") +
                                              std::strerror(errno)));
    }
    std::byte* shm = mapping.data();
    // Page-locked, so that the instance's copies run at pinned speed straight from it.
    auto registration =
        device_->RegisterHostMemory(shm + body.input_offset, body.shm_bytes - body.input_offset);
    if (!registration.ok()) return SendError(registration.status());
    InstanceOptions options;
    options.stage_timing_period = body.stage_timing_period;
    if (body.graph_disabled) options.graph = GraphPolicy::kDisabled;
    options.external_input_staging = {shm + body.input_offset, spec.max_input_bytes};
    options.external_output_staging = {shm + body.output_offset, spec.out_bytes};
    options.stage_progress = &PageWord(shm, kControlProgressOffset);
    auto instance = Instance::Create(function, options);
    if (!instance.ok()) {
      *registration = Device::HostRegistration();  // unregistered before it is unmapped
      return SendError(instance.status());
    }
    CreatedBody created{};
    created.instance_id = body.instance_id;
    created.upload_us = (*instance)->timings().constants_upload_us;
    created.create_us = (*instance)->timings().create_us - created.upload_us;
    auto host = std::make_unique<InstanceHost>(std::move(mapping), std::move(*registration),
                                               std::move(*instance), device_, body.request_spin_us,
                                               body.spin_yield != 0);
    host->Start();
    instances_.push_back(std::move(host));
    return Send(MessageType::kCreated, &created, sizeof created);
  }

  // Instances whose threads served DESTROY: join and free them.
  void ReapFinishedInstances() {
    instances_.remove_if(
        [](const std::unique_ptr<InstanceHost>& host) { return host->finished(); });
  }

  Options options_;
  Channel channel_;
  std::shared_ptr<Device> device_;
  std::map<uint64_t, std::shared_ptr<const Function>> functions_;
  std::list<std::unique_ptr<InstanceHost>> instances_;
  pid_t parent_;  // the gateway
  uint64_t request_id_ = 0;
  bool exit_after_reply_ = false;
};

bool ParseArgs(int argc, char** argv, Options* options) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    // A whole decimal number, nothing before or after it (strtoull alone takes "-1" and "2x").
    auto number = [&](uint64_t* out) {
      if (value == nullptr || *value < '0' || *value > '9') return false;
      char* end = nullptr;
      errno = 0;
      *out = std::strtoull(value, &end, 10);
      if (*end != '\0' || errno == ERANGE) return false;
      ++i;
      return true;
    };
    uint64_t n = 0;
    if (arg == "--device" && value != nullptr) {
      options->device = value;
      ++i;
    } else if (arg == "--ordinal" && number(&n)) {
      options->ordinal = static_cast<int>(n);
    } else if (arg == "--gpu-wait" && value != nullptr && ParseGpuWait(value).ok()) {
      options->device_options.wait = *ParseGpuWait(value);
      ++i;
    } else if (arg == "--device-connections" && number(&n) && n >= 1 && n <= 32) {
      options->device_connections = static_cast<int>(n);
    } else if (arg == "--workdir" && value != nullptr) {
      options->sandbox.workdir = value;
      ++i;
    } else if (arg == "--no-sandbox") {
      options->sandbox.enabled = false;
    } else if (arg == "--max-open-files" && number(&n)) {
      options->sandbox.max_open_files = n;
    } else if (arg == "--cpu-seconds" && number(&n)) {
      options->sandbox.cpu_seconds = n;
    } else if (arg == "--address-space-headroom" && number(&n)) {
      options->sandbox.address_space_headroom = n;
    } else if (arg == "--uid" && number(&n)) {
      options->sandbox.uid = static_cast<int64_t>(n);
    } else if (arg == "--gid" && number(&n)) {
      options->sandbox.gid = static_cast<int64_t>(n);
    } else {
      std::fprintf(stderr, "kchain-worker: bad argument '%s' (the gateway starts this program)\n",
                   arg.c_str());
      return false;
    }
  }
  return true;
}

}  // namespace
}  // namespace kchain::worker

int main(int argc, char** argv) {
  // Die with the gateway.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() == 1) return 1;
  ::signal(SIGPIPE, SIG_IGN);
  kchain::worker::Options options;
  if (!kchain::worker::ParseArgs(argc, argv, &options)) return 2;
  // Read by the driver when it creates the context, so it must be set before any CUDA call.
  // Fewer hardware work queues per context: more contexts fit on the device (on an H200,
  // about 100 with CUDA's default of 8, and until memory runs out with 2).
  if (options.device_connections > 0) {
    ::setenv("CUDA_DEVICE_MAX_CONNECTIONS", std::to_string(options.device_connections).c_str(), 1);
  }
  kchain::worker::Worker worker(options);
  return worker.Run();
}
