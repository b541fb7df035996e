// kchain-worker: hosts one instance of one tenant's function, in its own process with its
// own device context, for the gateway (--isolation=process). Started by the gateway, never
// by hand: it speaks the protocol in protocol.h on fd 3.
//
// Life: sandbox step 1 (network namespace, working directory, limits) -> open the device
// (a CUDA context: the slow part, done before any tenant is known, so that a pool of these
// can wait ready) -> seccomp -> READY -> LOAD (binds it to one function of one tenant for
// good) -> RUN / PARK / WAKE ... -> EXIT, or death, which the gateway reports and replaces.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "gateway/worker/protocol.h"
#include "gateway/worker/sandbox.h"
#include "kchain/function.h"
#include "kchain/manifest.h"

namespace kchain::worker {
namespace {

using Clock = std::chrono::steady_clock;

double MicrosSince(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

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
  SandboxOptions sandbox;
};

class Worker {
 public:
  Worker(const Options& options) : options_(options), channel_(kWorkerSocketFd) {}

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
    if (options_.sandbox.enabled && ApplySeccomp(&notes)) ready.sandbox |= kSandboxSeccomp;

    ready.protocol_version = kProtocolVersion;
    ready.pid = static_cast<uint32_t>(::getpid());
    ready.device_kind = static_cast<uint32_t>(device_->kind());
    ready.max_threads_per_block = device_->limits().max_threads_per_block;
    ready.max_grid_size = device_->limits().max_grid_size;
    ready.total_memory_bytes = device_->limits().total_memory_bytes;
    ready.max_buffer_bytes = device_->limits().max_buffer_bytes;
    ready.baseline_rss_bytes = ResidentBytes();
    std::snprintf(ready.device_name, sizeof ready.device_name, "%s", device_->name().c_str());
    std::snprintf(ready.sandbox_notes, sizeof ready.sandbox_notes, "%s", notes.c_str());
    if (!channel_.Send(MessageType::kReady, &ready, sizeof ready).ok()) return 1;

    while (true) {
      // Between runs, spin a while on the control page: a request posted there is taken
      // without the gateway having to wake this process through the socket.
      if (instance_ != nullptr && request_spin_us_ != 0) {
        Status spun = SpinForRequests();
        if (!spun.ok() || exit_after_reply_) return exit_after_reply_ ? 3 : 1;
      }
      std::vector<int> fds;
      Status received = channel_.Receive(-1, &fds);
      if (!received.ok()) return 0;  // the gateway is gone
      Status handled;
      switch (channel_.type()) {
        case MessageType::kLoad:
          handled = HandleLoad(fds);
          break;
        case MessageType::kRun: {
          RunBody body{};
          if (!channel_.CopyBody(&body) || instance_ == nullptr) {
            handled =
                SendError(instance_ != nullptr ? InternalError("malformed RUN") : NoInstance());
          } else if (body.sequence > handled_sequence_) {
            handled = HandleRun(body.sequence, body.input_bytes);
          }  // else: the socket copy of a run already taken from the control page
          break;
        }
        case MessageType::kPark:
          handled = Reply(instance_ ? instance_->Park() : NoInstance(), MessageType::kParked);
          break;
        case MessageType::kWake:
          handled = HandleWake();
          break;
        case MessageType::kExit:
          return 0;
        default:
          handled = SendError(InternalError("unexpected message"));
      }
      for (int fd : fds) ::close(fd);  // whatever a handler did not keep
      if (!handled.ok() || exit_after_reply_) return exit_after_reply_ ? 3 : 1;
    }
  }

 private:
  std::atomic<uint64_t>& Control64(size_t offset) {
    return *reinterpret_cast<std::atomic<uint64_t>*>(shm_ + offset);
  }
  std::atomic<uint32_t>& Control32(size_t offset) {
    return *reinterpret_cast<std::atomic<uint32_t>*>(shm_ + offset);
  }

  // Takes runs posted on the control page for request_spin_us_ after the last one. The flag
  // and the sequence are sequentially consistent on both sides (a Dekker handshake): either
  // this side sees the request before it stops spinning, or the gateway sees that it stopped
  // and sends the request through the socket.
  Status SpinForRequests() {
    auto& requested = Control64(kControlRequestSequenceOffset);
    auto& spinning = Control32(kControlWorkerSpinningOffset);
    spinning.store(1, std::memory_order_seq_cst);
    auto until = Clock::now() + std::chrono::microseconds(request_spin_us_);
    while (true) {
      if (requested.load(std::memory_order_seq_cst) > handled_sequence_) {
        KCHAIN_RETURN_IF_ERROR(RunFromControlPage());
        if (exit_after_reply_) break;
        until = Clock::now() + std::chrono::microseconds(request_spin_us_);
        continue;
      }
      if (Clock::now() >= until) {
        spinning.store(0, std::memory_order_seq_cst);
        // A request that came in just before the flag went down.
        if (requested.load(std::memory_order_seq_cst) <= handled_sequence_) break;
        spinning.store(1, std::memory_order_seq_cst);
        continue;
      }
      CpuRelax();
    }
    spinning.store(0, std::memory_order_seq_cst);
    return Status();
  }

  Status RunFromControlPage() {
    const uint64_t sequence =
        Control64(kControlRequestSequenceOffset).load(std::memory_order_acquire);
    const uint64_t bytes = Control64(kControlRequestBytesOffset).load(std::memory_order_relaxed);
    return HandleRun(sequence, bytes);
  }

  StatusOr<std::shared_ptr<Device>> OpenDevice() {
    if (options_.device == "auto") {
      if (Device::CudaDeviceCount() > options_.ordinal) {
        return Device::Open(DeviceKind::kCuda, options_.ordinal);
      }
      return Device::Open(DeviceKind::kHost);
    }
    KCHAIN_ASSIGN_OR_RETURN(DeviceKind kind, ParseDeviceKind(options_.device));
    return Device::Open(kind, kind == DeviceKind::kCuda ? options_.ordinal : 0);
  }

  int ReportAndExit(const Status& status) {
    std::fprintf(stderr, "kchain-worker: %s\n", status.ToString().c_str());
    (void)SendError(status);
    return 2;
  }

  static Status NoInstance() { return FailedPreconditionError("no instance loaded"); }

  Status SendError(const Status& status) {
    ErrorBody body{static_cast<uint32_t>(status.code()), device_ != nullptr && device_->broken()};
    if (body.broken) exit_after_reply_ = true;
    return channel_.Send(MessageType::kError, &body, sizeof body, status.message());
  }

  Status Reply(const Status& status, MessageType ok_type) {
    if (!status.ok()) return SendError(status);
    return channel_.Send(ok_type, nullptr, 0);
  }

  // LOAD: fds are [library, manifest, constants if any, shared memory if an instance is
  // wanted].
  Status HandleLoad(std::vector<int>& fds) {
    LoadBody load{};
    if (!channel_.CopyBody(&load) || function_ != nullptr) {
      return SendError(InternalError(function_ == nullptr ? "malformed LOAD" : "already loaded"));
    }
    const LoadBody* body = &load;
    const size_t wanted = 2 + (body->has_constants ? 1 : 0) + (body->create_instance ? 1 : 0);
    if (fds.size() != wanted) return SendError(InternalError("LOAD came with the wrong fds"));
    const int shm_fd = body->create_instance ? fds.back() : -1;
    LoadedBody loaded{};
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
    if (body->has_constants) {
      auto read = ReadWholeFd(fds[2], manifest->spec.constant_bytes, "the constants");
      if (!read.ok()) return SendError(read.status());
      constants = std::move(*read);
    }
    auto function = Function::Create(device_, *library, manifest->spec,
                                     std::as_bytes(std::span(constants.data(), constants.size())));
    if (!function.ok()) return SendError(function.status());
    loaded.constants_us = MicrosSince(constants_start);
    function_ = *function;

    if (body->create_instance) {
      Status created = CreateInstance(*body, shm_fd, &loaded);
      if (!created.ok()) return SendError(created);
    }
    return channel_.Send(MessageType::kLoaded, &loaded, sizeof loaded);
  }

  Status CreateInstance(const LoadBody& body, int shm_fd, LoadedBody* loaded) {
    const FunctionSpec& spec = function_->spec();
    if (body.input_offset + spec.max_input_bytes > body.shm_bytes ||
        body.output_offset + spec.out_bytes > body.shm_bytes ||
        body.input_offset < kControlPageBytes) {
      return InternalError("the shared memory does not fit the function");
    }
    void* map = ::mmap(nullptr, body.shm_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, shm_fd, 0);
    if (map == MAP_FAILED) {
      return InternalError(std::string("mmap of the shared memory: ") + std::strerror(errno));
    }
    shm_ = static_cast<std::byte*>(map);
    shm_bytes_ = body.shm_bytes;
    // Page-locked, so that the instance's copies run at pinned speed straight from it.
    auto registration =
        device_->RegisterHostMemory(shm_ + body.input_offset, body.shm_bytes - body.input_offset);
    if (!registration.ok()) return registration.status();
    registration_ = std::move(*registration);

    InstanceOptions options;
    options.stage_timing_period = body.stage_timing_period;
    if (body.graph_disabled) options.graph = GraphPolicy::kDisabled;
    options.external_input_staging = {shm_ + body.input_offset, spec.max_input_bytes};
    options.external_output_staging = {shm_ + body.output_offset, spec.out_bytes};
    options.stage_progress = reinterpret_cast<std::atomic<uint32_t>*>(shm_ + body.progress_offset);
    request_spin_us_ = body.request_spin_us;
    KCHAIN_ASSIGN_OR_RETURN(instance_, Instance::Create(function_, options));
    loaded->upload_us = instance_->timings().constants_upload_us;
    loaded->create_us = instance_->timings().create_us - loaded->upload_us;
    return Status();
  }

  Status HandleRun(uint64_t sequence, uint64_t input_bytes) {
    handled_sequence_ = sequence;
    RunTimings timings;
    const Status status = instance_->RunStaged(input_bytes, &timings);
    RanBody ran{};
    ran.sequence = sequence;
    ran.status_code = static_cast<uint32_t>(status.code());
    ran.mode = static_cast<uint32_t>(timings.mode);
    ran.stages_timed = timings.stages_timed;
    ran.broken = instance_->state() == InstanceState::kBroken;
    ran.input_copy_us = timings.input_copy_us;
    ran.chain_us = timings.chain_us;
    ran.output_copy_us = timings.output_copy_us;
    ran.total_us = timings.total_us;
    // A broken device context cannot be recovered in this process: report, then exit.
    if (ran.broken) exit_after_reply_ = true;
    // The reply goes to the control page first, where a gateway waiting on a short run spins
    // for it, then to the socket, where a gateway that stopped spinning sleeps on it.
    std::memcpy(shm_ + kControlReplyOffset, &ran, sizeof ran);
    const std::string& message = status.message();
    const size_t text = std::min(message.size(), kControlPageBytes - kControlMessageOffset - 1);
    std::memcpy(shm_ + kControlMessageOffset, message.data(), text);
    shm_[kControlMessageOffset + text] = std::byte{0};
    Control64(kControlReplySequenceOffset).store(sequence, std::memory_order_release);
    return channel_.Send(MessageType::kRan, &ran, sizeof ran, status.ok() ? "" : message);
  }

  Status HandleWake() {
    if (instance_ == nullptr) return SendError(NoInstance());
    Status woke = instance_->Wake();
    if (!woke.ok()) return SendError(woke);
    WokenBody body{instance_->timings().wake_us - instance_->timings().constants_upload_us,
                   instance_->timings().constants_upload_us};
    return channel_.Send(MessageType::kWoken, &body, sizeof body);
  }

  Options options_;
  Channel channel_;
  std::shared_ptr<Device> device_;
  std::shared_ptr<const Function> function_;
  std::byte* shm_ = nullptr;
  size_t shm_bytes_ = 0;
  Device::HostRegistration registration_;
  std::unique_ptr<Instance> instance_;
  uint32_t request_spin_us_ = 0;
  uint64_t handled_sequence_ = 0;
  bool exit_after_reply_ = false;
};

bool ParseArgs(int argc, char** argv, Options* options) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    auto number = [&](uint64_t* out) {
      if (value == nullptr) return false;
      *out = std::strtoull(value, nullptr, 10);
      ++i;
      return true;
    };
    uint64_t n = 0;
    if (arg == "--device" && value != nullptr) {
      options->device = value;
      ++i;
    } else if (arg == "--ordinal" && number(&n)) {
      options->ordinal = static_cast<int>(n);
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
  kchain::worker::Worker worker(options);
  return worker.Run();
}
