#include "gateway/process_executor.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

namespace kchain::gateway {
namespace {

using Clock = std::chrono::steady_clock;
using worker::MessageType;

constexpr size_t kPage = 4096;
constexpr int kLoadTimeoutMs = 120000;

double MicrosSince(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

size_t RoundUp(size_t n) { return (n + kPage - 1) / kPage * kPage; }

// Worker messages name the library as /proc/self/fd/N; callers know it by its stored path.
std::string Relabel(std::string message, const std::string& library_path) {
  const std::string prefix = "/proc/self/fd/";
  for (size_t at = message.find(prefix); at != std::string::npos; at = message.find(prefix, at)) {
    size_t end = at + prefix.size();
    while (end < message.size() && std::isdigit(static_cast<unsigned char>(message[end]))) ++end;
    message.replace(at, end - at, library_path);
    at += library_path.size();
  }
  return message;
}

// A version loaded for workers: the files it needs, opened read-only, and its manifest.
class ProcessVersion final : public LoadedVersion {
 public:
  using LoadedVersion::LoadedVersion;
  ~ProcessVersion() override {
    for (int fd : {library_fd, constants_fd, manifest_fd}) {
      if (fd >= 0) ::close(fd);
    }
  }
  int library_fd = -1;
  int constants_fd = -1;
  int manifest_fd = -1;  // the canonical manifest in a sealed memory file: any size fits
  std::string library_path;
  std::string manifest_json;
};

class ProcessExecutor;

class ProcessInstance final : public ExecInstance {
 public:
  ProcessInstance(ProcessExecutor* executor, std::unique_ptr<WorkerProcess> worker,
                  std::shared_ptr<LoadedVersion> version, std::byte* shm, size_t shm_bytes,
                  size_t output_offset);
  ~ProcessInstance() override;

  std::span<std::byte> input_buffer() override {
    return {shm_ + kPage, version_->spec().max_input_bytes};
  }
  std::span<const std::byte> output_buffer() const override {
    return {shm_ + output_offset_, version_->spec().out_bytes};
  }
  Status Run(size_t input_bytes, kchain::RunTimings* timings) override;
  Status Park() override;
  Status Wake(StartTimings* timings) override;
  bool broken() const override { return broken_; }
  bool Alive() override {
    if (!broken_ && !worker_->Alive()) (void)Died();
    return !broken_;
  }
  kchain::ExecMode exec_mode() const override { return mode_; }

 private:
  // The worker is gone: reap it, count it, and describe what the invocation was doing.
  Status Died(const std::string& cause_override = "", const std::string& reason_override = "");
  std::string StageName() const;
  // Consumes the socket copies of replies that were taken from the control page.
  void DrainStaleReplies();
  // Sends `type` and waits for `want`, whose body is copied into `body`.
  Status Request(MessageType type, MessageType want, void* body, size_t body_bytes, int timeout_ms);

  ProcessExecutor* executor_;
  std::unique_ptr<WorkerProcess> worker_;
  std::shared_ptr<LoadedVersion> version_;
  std::byte* shm_;
  size_t shm_bytes_;
  size_t output_offset_;
  bool broken_ = false;
  bool resident_ = true;
  uint64_t sequence_ = 0;
  int stale_replies_ = 0;  // socket copies of replies already taken from the control page
  kchain::ExecMode mode_ = kchain::ExecMode::kDirect;
};

class ProcessExecutor final : public Executor {
 public:
  explicit ProcessExecutor(ProcessExecutorOptions options) : options_(std::move(options)) {}

  ~ProcessExecutor() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : spawners_) t.join();
    idle_.clear();  // kills the idle workers
  }

  Status Start() {
    // The first worker, synchronously: it tells the device, and a gateway that cannot start
    // workers should fail at start-up, not at the first invocation.
    auto first = WorkerProcess::Spawn(options_.launch);
    if (!first.ok()) return first.status();
    const worker::ReadyBody& ready = (*first)->ready();
    kind_ = static_cast<DeviceKind>(ready.device_kind);
    name_ = ready.device_name;
    total_memory_ = ready.total_memory_bytes;
    sandbox_ = SandboxText(ready);
    {
      std::lock_guard<std::mutex> lock(mu_);
      idle_.push_back(std::move(*first));
      ++live_;
    }
    const int spawners = std::clamp(options_.prestarted_workers, 1, 4);
    for (int i = 0; i < spawners; ++i) spawners_.emplace_back([this] { SpawnLoop(); });
    return Status();
  }

  kchain::DeviceKind device_kind() const override { return kind_; }
  std::string device_name() const override { return name_; }

  StatusOr<std::shared_ptr<LoadedVersion>> Load(const StoredVersion& stored,
                                                const kchain::Manifest& manifest) override {
    auto version = std::make_shared<ProcessVersion>(stored.key, stored.record.version, manifest);
    version->library_path = stored.library_path;
    version->manifest_json = kchain::ManifestToJson(manifest);
    auto manifest_fd = worker::SealedMemoryFile("kchain-manifest", version->manifest_json);
    if (!manifest_fd.ok()) return manifest_fd.status();
    version->manifest_fd = *manifest_fd;
    version->library_fd = ::open(stored.library_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (version->library_fd < 0) {
      return InternalError("cannot open '" + stored.library_path + "': " + std::strerror(errno));
    }
    if (!stored.constants_path.empty()) {
      version->constants_fd = ::open(stored.constants_path.c_str(), O_RDONLY | O_CLOEXEC);
      if (version->constants_fd < 0) {
        return InternalError("cannot open '" + stored.constants_path +
                             "': " + std::strerror(errno));
      }
    }
    // Validate in a worker of its own, discarded afterwards: it has run the library's code.
    KCHAIN_ASSIGN_OR_RETURN(auto worker, TakeWorker());
    worker::LoadedBody loaded{};
    Status status = SendLoad(*worker, *version, /*shm_fd=*/-1, 0, 0, &loaded);
    if (status.ok()) {
      version->library_load_us = loaded.library_us;
      version->constants_load_us = loaded.constants_us;
    }
    worker->Stop(1000);
    WorkerGone();
    if (!status.ok()) return status;
    return std::shared_ptr<LoadedVersion>(std::move(version));
  }

  StatusOr<std::unique_ptr<ExecInstance>> CreateInstance(
      const std::shared_ptr<LoadedVersion>& version, StartTimings* timings) override {
    const auto& loaded_version = static_cast<const ProcessVersion&>(*version);
    const auto start = Clock::now();
    KCHAIN_ASSIGN_OR_RETURN(auto worker, TakeWorker());
    timings->acquire_us = MicrosSince(start);

    // The instance's shared memory: a control page, then the input, then the output.
    const FunctionSpec& spec = version->spec();
    const size_t output_offset = kPage + RoundUp(spec.max_input_bytes);
    const size_t shm_bytes = output_offset + RoundUp(spec.out_bytes);
    const int shm_fd = ::memfd_create("kchain-instance", MFD_CLOEXEC);
    if (shm_fd < 0 || ::ftruncate(shm_fd, static_cast<off_t>(shm_bytes)) != 0) {
      if (shm_fd >= 0) ::close(shm_fd);
      WorkerGone();
      return ResourceExhaustedError(std::string("shared memory for an instance: ") +
                                    std::strerror(errno));
    }
    void* map = ::mmap(nullptr, shm_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, shm_fd, 0);
    if (map == MAP_FAILED) {
      ::close(shm_fd);
      WorkerGone();
      return ResourceExhaustedError(std::string("mmap: ") + std::strerror(errno));
    }
    worker::LoadedBody loaded{};
    Status status = SendLoad(*worker, loaded_version, shm_fd, shm_bytes, output_offset, &loaded);
    ::close(shm_fd);
    if (!status.ok()) {
      ::munmap(map, shm_bytes);
      worker->Kill();
      worker->Reap();
      WorkerGone();
      return status;
    }
    timings->library_us = loaded.library_us;
    timings->create_us = loaded.create_us;
    timings->constants_us = loaded.constants_us + loaded.upload_us;
    resident_bytes_.fetch_add(version->instance_device_bytes());
    return std::unique_ptr<ExecInstance>(new ProcessInstance(
        this, std::move(worker), version, static_cast<std::byte*>(map), shm_bytes, output_offset));
  }

  bool Ready(std::string* why) const override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty() || last_spawn_error_.ok()) return true;
    *why = "cannot start workers: " + last_spawn_error_.message();
    return false;
  }

  size_t device_memory_in_use() const override { return resident_bytes_.load(); }
  size_t device_memory_total() const override { return total_memory_; }

  ExecutorStats Stats() const override {
    ExecutorStats stats;
    stats.isolation = "process";
    stats.sandbox = sandbox_;
    std::lock_guard<std::mutex> lock(mu_);
    stats.workers_live = live_;
    stats.workers_idle = static_cast<int>(idle_.size());
    for (const auto& [reason, n] : restarts_) stats.restarts.emplace_back(reason, n);
    stats.last_restart = last_restart_;
    return stats;
  }

  // Called by instances.
  void WorkerGone() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      --live_;
    }
    cv_.notify_all();
  }
  // last_restart is for admins, who see every tenant: it says whose function it was.
  void RecordRestart(const std::string& reason, const FunctionKey& key,
                     const std::string& description) {
    std::lock_guard<std::mutex> lock(mu_);
    ++restarts_[reason];
    last_restart_ = key.tenant + "/" + key.name + ": " + description;
  }
  void ResidentChange(int64_t delta) { resident_bytes_.fetch_add(static_cast<size_t>(delta)); }
  const ProcessExecutorOptions& options() const { return options_; }

 private:
  static std::string SandboxText(const worker::ReadyBody& ready) {
    std::string out;
    const std::pair<uint32_t, const char*> names[] = {
        {worker::kSandboxNetworkNamespace, "network namespace"},
        {worker::kSandboxSeccomp, "seccomp"},
        {worker::kSandboxRlimits, "resource limits"},
        {worker::kSandboxWorkdir, "private working directory"},
        {worker::kSandboxUser, "unprivileged user"}};
    for (const auto& [bit, name] : names) {
      if (ready.sandbox & bit) out += (out.empty() ? "" : ", ") + std::string(name);
    }
    if (out.empty()) out = "none";
    if (ready.sandbox_notes[0] != '\0') out += " (" + std::string(ready.sandbox_notes) + ")";
    return out;
  }

  // Keeps the idle pool at its target; spawns for callers waiting on an empty pool too.
  void SpawnLoop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      const int want = options_.prestarted_workers + waiting_;
      if (static_cast<int>(idle_.size()) + spawning_ >= want ||
          live_ + spawning_ >= options_.max_workers) {
        cv_.wait(lock);
        continue;
      }
      ++spawning_;
      lock.unlock();
      auto worker = WorkerProcess::Spawn(options_.launch);
      lock.lock();
      --spawning_;
      if (worker.ok()) {
        idle_.push_back(std::move(*worker));
        ++live_;
        last_spawn_error_ = Status();
      } else {
        last_spawn_error_ = worker.status();
        ++spawn_failures_;
        cv_.notify_all();
        cv_.wait_for(lock, std::chrono::seconds(1));  // back off
      }
      cv_.notify_all();
    }
  }

  StatusOr<std::unique_ptr<WorkerProcess>> TakeWorker() {
    std::unique_lock<std::mutex> lock(mu_);
    if (idle_.empty() && live_ + spawning_ >= options_.max_workers) {
      return ResourceExhaustedError("all " + std::to_string(options_.max_workers) +
                                    " worker processes are in use (--max-workers)");
    }
    ++waiting_;
    cv_.notify_all();
    const uint64_t failures = spawn_failures_;
    const bool got = cv_.wait_for(lock, std::chrono::milliseconds(kLoadTimeoutMs), [&] {
      return stopping_ || !idle_.empty() || spawn_failures_ != failures;
    });
    --waiting_;
    if (stopping_) return UnavailableError("the server is shutting down");
    if (idle_.empty()) {
      return UnavailableError(got ? "cannot start a worker: " + last_spawn_error_.message()
                                  : "no worker became ready in time");
    }
    auto worker = std::move(idle_.front());
    idle_.pop_front();
    cv_.notify_all();  // the pool has room to refill
    return worker;
  }

  // What a worker's death while loading means. At a deploy's validation, a crash is the
  // library's doing (its constructors ran); at a cold start the library was validated, so a
  // crash is its code failing (502), and a worker killed from outside (SIGKILL: the OOM
  // killer, an operator) or gone silent is the server's problem (503), never the client's.
  static Status LoadDeathStatus(const ProcessVersion& version, const WorkerDeath& death,
                                const Status& received, bool validating) {
    const bool external = death.reason == "killed";
    const std::string what = "kernel library '" + version.library_path + "'";
    if (received.code() == StatusCode::kDeadlineExceeded) {
      return UnavailableError("the worker loading " + what + " did not answer within " +
                              std::to_string(kLoadTimeoutMs / 1000) + " s and was killed");
    }
    if (external) {
      return UnavailableError("the worker loading " + what + " " + death.description +
                              " (not the library's doing as far as the server can tell); retry");
    }
    if (validating) {
      return InvalidArgumentError(what + " killed the worker while loading: it " +
                                  death.description);
    }
    return KernelError(what + " killed the worker while loading for a cold start: it " +
                       death.description + "; the worker is replaced");
  }

  Status SendLoad(WorkerProcess& worker, const ProcessVersion& version, int shm_fd,
                  size_t shm_bytes, size_t output_offset, worker::LoadedBody* loaded) {
    worker::LoadBody body{};
    body.create_instance = shm_fd >= 0;
    body.has_constants = version.constants_fd >= 0;
    body.stage_timing_period = options_.stage_timing_period;
    body.request_spin_us = static_cast<uint32_t>(options_.request_spin.count());
    body.shm_bytes = shm_bytes;
    body.input_offset = kPage;
    body.output_offset = output_offset;
    body.progress_offset = 0;
    body.manifest_bytes = static_cast<uint32_t>(version.manifest_json.size());
    std::vector<int> fds = {version.library_fd, version.manifest_fd};
    if (version.constants_fd >= 0) fds.push_back(version.constants_fd);
    if (shm_fd >= 0) fds.push_back(shm_fd);
    worker::Channel& channel = worker.channel();
    Status sent = channel.Send(MessageType::kLoad, &body, sizeof body, {}, fds);
    Status received = sent.ok() ? channel.Receive(kLoadTimeoutMs) : sent;
    if (!received.ok()) {
      worker.Kill();
      const WorkerDeath death = worker.Reap();
      return LoadDeathStatus(version, death, received, /*validating=*/shm_fd < 0);
    }
    worker::Reply reply =
        worker::DecodeReply(channel, MessageType::kLoaded, loaded, sizeof *loaded);
    switch (reply.kind) {
      case worker::Reply::Kind::kExpected:
        if (!(loaded->library_us >= 0) || !(loaded->constants_us >= 0) ||
            !(loaded->create_us >= 0) || !(loaded->upload_us >= 0)) {
          *loaded = {};
        }
        return Status();
      case worker::Reply::Kind::kError:
        return Status(reply.status.code(), Relabel(reply.status.message(), version.library_path));
      case worker::Reply::Kind::kMalformed:
        break;
    }
    // A library can write to the worker's socket from its constructors: a forged or
    // malformed reply is the library's doing, and the worker is not trusted again.
    worker.Kill();
    worker.Reap();
    return InvalidArgumentError("kernel library '" + version.library_path +
                                "' broke the worker protocol while loading (" +
                                reply.status.message() + ")");
  }

  ProcessExecutorOptions options_;
  DeviceKind kind_ = DeviceKind::kHost;
  std::string name_;
  std::string sandbox_;
  size_t total_memory_ = 0;
  std::atomic<size_t> resident_bytes_{0};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<WorkerProcess>> idle_;
  int live_ = 0;
  int spawning_ = 0;
  int waiting_ = 0;
  uint64_t spawn_failures_ = 0;
  Status last_spawn_error_;
  bool stopping_ = false;
  std::map<std::string, uint64_t> restarts_;
  std::string last_restart_;
  std::vector<std::thread> spawners_;
};

// --- ProcessInstance ---

ProcessInstance::ProcessInstance(ProcessExecutor* executor, std::unique_ptr<WorkerProcess> worker,
                                 std::shared_ptr<LoadedVersion> version, std::byte* shm,
                                 size_t shm_bytes, size_t output_offset)
    : executor_(executor),
      worker_(std::move(worker)),
      version_(std::move(version)),
      shm_(shm),
      shm_bytes_(shm_bytes),
      output_offset_(output_offset) {}

ProcessInstance::~ProcessInstance() {
  if (!broken_) worker_->Stop(1000);
  if (resident_)
    executor_->ResidentChange(-static_cast<int64_t>(version_->instance_device_bytes()));
  worker_.reset();
  ::munmap(shm_, shm_bytes_);
  executor_->WorkerGone();
}

std::string ProcessInstance::StageName() const {
  const auto* progress = reinterpret_cast<const std::atomic<uint32_t>*>(shm_);
  const uint32_t stage = progress->load(std::memory_order_relaxed);
  const auto& chain = version_->spec().chain;
  if (stage == 0 || stage > chain.size()) return "chain " + kchain::ChainToString(version_->spec());
  return "kernel '" + chain[stage - 1].kernel + "' (stage " + std::to_string(stage) + " of " +
         std::to_string(chain.size()) + ")";
}

Status ProcessInstance::Died(const std::string& cause_override,
                             const std::string& reason_override) {
  // A worker that broke the protocol may still run: it is never waited for, only ended.
  // (A worker that already died keeps its own cause: SIGKILL does nothing to a zombie.)
  worker_->Kill();
  const WorkerDeath death = worker_->Reap();
  broken_ = true;
  const std::string reason = reason_override.empty() ? death.reason : reason_override;
  const std::string cause =
      cause_override.empty() ? "its worker " + death.description : cause_override;
  const std::string message = StageName() + " of '" + version_->key().name + "' failed: " + cause +
                              "; the worker is replaced";
  executor_->RecordRestart(reason, version_->key(), message);
  return KernelError(message);
}

void ProcessInstance::DrainStaleReplies() {
  worker::Channel& channel = worker_->channel();
  while (stale_replies_ > 0 && channel.TryReceive().ok()) --stale_replies_;
}

Status ProcessInstance::Run(size_t input_bytes, kchain::RunTimings* timings) {
  if (broken_) return UnavailableError("this instance's worker is gone");
  worker::Channel& channel = worker_->channel();
  DrainStaleReplies();
  const worker::RunBody body{input_bytes, ++sequence_};
  // Post the request on the control page; wake the worker through the socket only if it is
  // not spinning there (the other half of the handshake in the worker's SpinForRequests).
  reinterpret_cast<std::atomic<uint64_t>*>(shm_ + worker::kControlRequestBytesOffset)
      ->store(input_bytes, std::memory_order_relaxed);
  reinterpret_cast<std::atomic<uint64_t>*>(shm_ + worker::kControlRequestSequenceOffset)
      ->store(sequence_, std::memory_order_seq_cst);
  const bool spinning =
      reinterpret_cast<std::atomic<uint32_t>*>(shm_ + worker::kControlWorkerSpinningOffset)
          ->load(std::memory_order_seq_cst) != 0;
  if (!spinning && !channel.Send(MessageType::kRun, &body, sizeof body).ok()) return Died();

  const auto& options = executor_->options();
  const auto started = Clock::now();
  // The reply, copied out of the control page or the socket before anything in it is
  // believed: the worker may rewrite shared memory at any moment.
  worker::RanBody ran{};
  bool replied = false;
  // Short runs: spin on the control page.
  const auto* reply_sequence =
      reinterpret_cast<const std::atomic<uint64_t>*>(shm_ + worker::kControlReplySequenceOffset);
  const auto spin_until = started + options.reply_spin;
  while (true) {
    if (reply_sequence->load(std::memory_order_acquire) == sequence_) {
      std::memcpy(&ran, shm_ + worker::kControlReplyOffset, sizeof ran);
      ++stale_replies_;
      replied = true;
      break;
    }
    if (Clock::now() >= spin_until) break;
    worker::CpuRelax();
  }

  std::string socket_text;  // the error message, when the reply came by socket
  if (!replied) {
    // Longer runs: sleep on the socket, watching the worker's memory every 20 ms.
    const auto deadline = started + options.run_timeout;
    const uint64_t rss_limit =
        options.memory_limit_bytes == 0
            ? 0
            : worker_->ready().baseline_rss_bytes + options.memory_limit_bytes;
    int slice_ms = 5;
    while (true) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      Status received =
          channel.Receive(static_cast<int>(std::clamp<int64_t>(left.count(), 0, slice_ms)));
      if (received.ok()) {
        worker::RanBody copy{};
        if (channel.type() == MessageType::kRan && channel.CopyBody(&copy) &&
            copy.sequence < sequence_ && stale_replies_ > 0) {
          --stale_replies_;  // an older run's copy
          continue;
        }
        break;
      }
      if (received.code() != StatusCode::kDeadlineExceeded) return Died();
      if (rss_limit != 0) {
        const uint64_t rss = worker_->ResidentBytes();
        if (rss > rss_limit) {
          worker_->Kill();
          return Died("its worker exceeded its memory limit (" + std::to_string(rss >> 20) +
                          " MiB resident, limit " + std::to_string(rss_limit >> 20) +
                          " MiB) and was killed",
                      "memory_limit");
        }
      }
      if (Clock::now() >= deadline) {
        worker_->Kill();
        const Status died =
            Died("it did not finish within the invocation timeout (" +
                     std::to_string(options.run_timeout.count()) + " ms); its worker was killed",
                 "timeout");
        return DeadlineExceededError(died.message());
      }
      slice_ms = 20;
    }
    worker::Reply reply = worker::DecodeReply(channel, MessageType::kRan, &ran, sizeof ran);
    if (reply.kind == worker::Reply::Kind::kError) {
      // An error in reply to RUN is not in the protocol for a loaded worker, except that a
      // broken device context may be reported this way: either way, the worker is done.
      worker_->Kill();
      return Died("its worker reported instead of running: " + reply.status.message(), "protocol");
    }
    if (reply.kind == worker::Reply::Kind::kMalformed || ran.sequence != sequence_) {
      worker_->Kill();
      return Died("its worker replied out of turn (" +
                      (reply.kind == worker::Reply::Kind::kMalformed
                           ? reply.status.message()
                           : "sequence " + std::to_string(ran.sequence) + ", expected " +
                                 std::to_string(sequence_)) +
                      ")",
                  "protocol");
    }
    socket_text = std::move(reply.text);
  }
  if (Status valid = worker::CheckRan(ran); !valid.ok() || ran.sequence != sequence_) {
    worker_->Kill();
    return Died("its worker's reply was malformed (" +
                    (valid.ok() ? std::string("wrong sequence number") : valid.message()) + ")",
                "protocol");
  }

  mode_ = static_cast<kchain::ExecMode>(ran.mode);
  if (timings != nullptr) {
    timings->mode = mode_;
    timings->stages_timed = ran.stages_timed != 0;
    timings->input_copy_us = ran.input_copy_us;
    timings->chain_us = ran.chain_us;
    timings->output_copy_us = ran.output_copy_us;
    timings->total_us = ran.total_us;
  }
  if (ran.status_code == 0) return Status();
  // The message (error path only): from the control page, within its bounds, or the socket.
  std::string message = replied ? worker::ControlPageText(shm_) : std::move(socket_text);
  // The worker knows its library as /proc/self/fd/N; say which stored library it is.
  Status status(
      worker::WorkerErrorCode(ran.status_code),
      Relabel(std::move(message), static_cast<const ProcessVersion&>(*version_).library_path));
  if (ran.broken) {
    // The device context in the worker is gone; the worker exits. Only this worker, though.
    status = Status(status.code(), status.message() +
                                       " (only this worker's device context was lost: the "
                                       "worker is replaced, other functions are unaffected)");
    broken_ = true;
    worker_->Kill();
    worker_->Reap();
    executor_->RecordRestart("device_fault", version_->key(), status.message());
  }
  return status;
}

Status ProcessInstance::Request(MessageType type, MessageType want, void* body, size_t body_bytes,
                                int timeout_ms) {
  worker::Channel& channel = worker_->channel();
  DrainStaleReplies();
  if (!channel.Send(type, nullptr, 0).ok()) {
    worker_->Kill();
    return Died();
  }
  Status received = channel.Receive(timeout_ms);
  worker::RanBody late{};
  while (received.ok() && channel.type() == MessageType::kRan && stale_replies_ > 0 &&
         channel.CopyBody(&late) && late.sequence <= sequence_) {
    --stale_replies_;  // a run's copy that arrived late
    received = channel.Receive(timeout_ms);
  }
  if (!received.ok()) {
    worker_->Kill();
    return Died();
  }
  worker::Reply reply = worker::DecodeReply(channel, want, body, body_bytes);
  switch (reply.kind) {
    case worker::Reply::Kind::kExpected:
      return Status();
    case worker::Reply::Kind::kError:
      if (reply.broken) {
        broken_ = true;
        worker_->Kill();
        worker_->Reap();
      }
      return reply.status;
    case worker::Reply::Kind::kMalformed:
      break;
  }
  worker_->Kill();
  return Died("its worker replied out of turn (" + reply.status.message() + ")", "protocol");
}

Status ProcessInstance::Park() {
  if (broken_) return UnavailableError("this instance's worker is gone");
  if (!resident_) return Status();
  KCHAIN_RETURN_IF_ERROR(
      Request(MessageType::kPark, MessageType::kParked, nullptr, 0, kLoadTimeoutMs));
  resident_ = false;
  executor_->ResidentChange(-static_cast<int64_t>(version_->instance_device_bytes()));
  return Status();
}

Status ProcessInstance::Wake(StartTimings* timings) {
  if (broken_) return UnavailableError("this instance's worker is gone");
  if (resident_) return Status();
  worker::WokenBody woken{};
  KCHAIN_RETURN_IF_ERROR(
      Request(MessageType::kWake, MessageType::kWoken, &woken, sizeof woken, kLoadTimeoutMs));
  if (woken.create_us >= 0 && woken.upload_us >= 0) {
    timings->create_us = woken.create_us;
    timings->constants_us = woken.upload_us;
  }
  resident_ = true;
  executor_->ResidentChange(static_cast<int64_t>(version_->instance_device_bytes()));
  return Status();
}

}  // namespace

StatusOr<std::unique_ptr<Executor>> MakeProcessExecutor(ProcessExecutorOptions options) {
  auto executor = std::make_unique<ProcessExecutor>(std::move(options));
  KCHAIN_RETURN_IF_ERROR(executor->Start());
  return std::unique_ptr<Executor>(std::move(executor));
}

}  // namespace kchain::gateway
