#include "gateway/exec/process_executor.h"

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
#include <set>
#include <thread>

#include "runtime/clock.h"
#include "runtime/unique_fd.h"

namespace kchain::gateway {
namespace {

using Clock = std::chrono::steady_clock;
using worker::MessageType;
using worker::Op;

constexpr size_t kPage = 4096;
constexpr int kControlTimeoutMs = 120000;
constexpr int kDestroyTimeoutMs = 2000;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
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

class ProcessExecutor;

// A function version as workers load it: what to send them, and the id they know it by.
class ProcessVersion final : public LoadedVersion {
 public:
  ProcessVersion(ProcessExecutor* executor, uint64_t id, const StoredVersion& stored,
                 const kchain::Manifest& manifest)
      : LoadedVersion(stored.key, stored.record.version, manifest),
        executor_(executor),
        id_(id),
        library_path(stored.library_path),
        constants_path(stored.constants_path),
        manifest_json(kchain::ManifestToJson(manifest)),
        library_bytes(stored.record.library_bytes) {}
  ~ProcessVersion() override;

  uint64_t id() const { return id_; }

 private:
  ProcessExecutor* executor_;
  uint64_t id_;

 public:
  const std::string library_path;
  const std::string constants_path;  // empty when there are no constants
  const std::string manifest_json;   // canonical
  const uint64_t library_bytes;
};

// What a control exchange came to.
struct ControlResult {
  enum class Kind {
    kOk,        // the awaited reply
    kReported,  // the worker reported an error (`status`, code checked); it lives on
    kDied,      // the worker died or was killed during the exchange (`death`)
    kProtocol,  // the worker broke the protocol (`status`); it was killed
  };
  Kind kind = Kind::kOk;
  Status status;
  WorkerDeath death;
  bool timed_out = false;  // kDied: it did not answer in time, and was killed
};

// A worker process bound to one scope, shared by the instances it hosts.
class BoundWorker {
 public:
  BoundWorker(uint64_t id, std::string key, std::string tenant,
              std::unique_ptr<WorkerProcess> process)
      : id_(id), key_(std::move(key)), tenant_(std::move(tenant)), process_(std::move(process)) {
    last_used_ns.store(NowNs(), std::memory_order_relaxed);
  }

  uint64_t id() const { return id_; }
  const std::string& key() const { return key_; }
  const std::string& tenant() const { return tenant_; }
  pid_t pid() const { return process_->pid(); }
  uint64_t ResidentBytes() const { return process_->ResidentBytes(); }
  double CpuSeconds() const { return process_->CpuSeconds(); }
  uint64_t baseline_rss() const { return process_->ready().baseline_rss_bytes; }
  bool gone() const { return gone_.load(std::memory_order_acquire); }
  // Not ended, and its socket not hung up (a cheap check).
  bool Alive() const { return !gone() && process_->Alive(); }

  // One request on the control socket and its reply (`want`, body copied to `reply`). The
  // caller holds control_mu for the whole exchange. A worker that dies, does not answer in
  // time (it is killed) or breaks the protocol (it is killed) is ended here.
  ControlResult Control(MessageType type, const void* body, size_t body_bytes,
                        std::span<const int> fds, MessageType want, void* reply, size_t reply_bytes,
                        int timeout_ms, const std::string& doing) {
    ControlResult result;
    if (gone()) {
      result.kind = ControlResult::Kind::kDied;
      result.death = End("", "").first;
      return result;
    }
    const uint64_t request = next_request_++;
    worker::Channel& channel = process_->channel();
    // The worker speaks only when spoken to: anything waiting on the socket now was written
    // by tenant code, and the worker is not trusted again.
    if (Status unsolicited = channel.TryReceive();
        unsolicited.code() != StatusCode::kDeadlineExceeded) {
      result.kind = unsolicited.code() == StatusCode::kUnavailable ? ControlResult::Kind::kDied
                                                                   : ControlResult::Kind::kProtocol;
      result.status = InternalError("the worker sent a message nobody asked for");
      result.death = End(result.kind == ControlResult::Kind::kDied ? "" : "protocol",
                         result.kind == ControlResult::Kind::kDied
                             ? ""
                             : "was killed: it sent a message nobody asked for")
                         .first;
      return result;
    }
    Status sent = channel.Send(type, body, body_bytes, {}, fds, request);
    Status received = sent.ok() ? channel.Receive(timeout_ms) : sent;
    if (!received.ok() && received.code() == StatusCode::kInternal) {
      // A message that is not one (too short, inconsistent lengths): a protocol violation.
      result.kind = ControlResult::Kind::kProtocol;
      result.status = received;
      End("protocol", "was killed: it broke the worker protocol while " + doing + " (" +
                          received.message() + ")");
      return result;
    }
    if (!received.ok()) {
      result.kind = ControlResult::Kind::kDied;
      result.timed_out = received.code() == StatusCode::kDeadlineExceeded;
      result.death =
          End(result.timed_out ? "timeout" : "",
              result.timed_out ? "was killed: it did not answer within " +
                                     std::to_string(timeout_ms / 1000) + " s while " + doing
                               : "")
              .first;
      return result;
    }
    worker::Reply decoded = worker::DecodeReply(channel, want, reply, reply_bytes, request);
    switch (decoded.kind) {
      case worker::Reply::Kind::kExpected:
        return result;
      case worker::Reply::Kind::kError:
        result.kind = ControlResult::Kind::kReported;
        result.status = decoded.status;
        if (decoded.broken) {
          End("device_fault", "lost its device context while " + doing);
        }
        return result;
      case worker::Reply::Kind::kMalformed:
        break;
    }
    result.kind = ControlResult::Kind::kProtocol;
    result.status = decoded.status;
    End("protocol", "was killed: it broke the worker protocol while " + doing + " (" +
                        decoded.status.message() + ")");
    return result;
  }

  // Ends the process, once: kills it if it still runs and reaps it. `reason` and `cause` say
  // why the gateway ended it ("" when it died by itself). Returns the death (its reason and
  // description, the gateway's cause when it gave one) and whether this call ended it.
  std::pair<WorkerDeath, bool> End(const std::string& reason, const std::string& cause) {
    std::lock_guard<std::mutex> lock(death_mu_);
    if (ended_) return {death_, false};
    ended_ = true;
    gone_.store(true, std::memory_order_release);
    process_->Kill();
    death_ = process_->Reap();
    if (!reason.empty()) death_.reason = reason;
    if (!cause.empty()) death_.description = cause;
    return {death_, true};
  }

  std::mutex control_mu;      // held for a whole control exchange
  std::set<uint64_t> loaded;  // function versions loaded there (under control_mu)
  std::atomic<int> loaded_count{0};
  std::atomic<int64_t> last_used_ns{0};
  // Host memory its functions and instances declare (libraries, constants, shared memory).
  std::atomic<uint64_t> declared_bytes{0};
  // Being retired: its instances are dropped without a DESTROY round trip each.
  std::atomic<bool> releasing{false};
  // Guarded by the executor's mu_.
  int instances = 0;  // hosted, or reserved by a cold start under way
  bool retired = false;
  Clock::time_point empty_since = Clock::now();

 private:
  const uint64_t id_;
  const std::string key_;
  const std::string tenant_;
  const std::unique_ptr<WorkerProcess> process_;
  uint64_t next_request_ = 1;  // under control_mu
  std::atomic<bool> gone_{false};
  std::mutex death_mu_;
  bool ended_ = false;
  WorkerDeath death_;
};

class ProcessInstance final : public ExecInstance {
 public:
  ProcessInstance(ProcessExecutor* executor, std::shared_ptr<BoundWorker> worker,
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
  uint64_t host() const override { return worker_->id(); }

 private:
  // Posts `op` on the control page and waits for its reply (up to `timeout`; runs also watch
  // the worker's memory). The reply, checked, lands in `ran` and the message (errors only) in
  // `message`. A worker that dies, runs past the timeout or exceeds its memory is ended.
  Status Call(Op op, uint64_t input_bytes, std::chrono::milliseconds timeout, worker::RanBody* ran,
              std::string* message);
  // The worker is gone: describe what this instance was doing, count the restart once.
  Status Died(const std::string& reason = "", const std::string& cause = "");
  std::string StageName() const;

  ProcessExecutor* executor_;
  std::shared_ptr<BoundWorker> worker_;
  std::shared_ptr<LoadedVersion> version_;
  std::byte* shm_;
  size_t shm_bytes_;
  size_t output_offset_;
  bool broken_ = false;
  bool resident_ = true;
  uint32_t sequence_ = 0;
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
    janitor_cv_.notify_all();
    for (auto& t : threads_) t.join();
    idle_.clear();  // kills the idle workers
    std::vector<std::shared_ptr<BoundWorker>> bound;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [id, w] : workers_) bound.push_back(w);
      workers_.clear();
    }
    for (auto& w : bound) w->End("", "");
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
    if (options_.device_budget_bytes == 0) options_.device_budget_bytes = total_memory_ / 10 * 9;
    const uint64_t free_with_one = ready.free_memory_bytes;
    std::vector<std::unique_ptr<WorkerProcess>> started;
    started.push_back(std::move(*first));
    // A second one measures what a context costs: the free device memory it took.
    if (options_.max_workers >= 2 && kind_ == DeviceKind::kCuda) {
      auto second = WorkerProcess::Spawn(options_.launch);
      if (second.ok()) {
        const uint64_t free_with_two = (*second)->ready().free_memory_bytes;
        if (free_with_one > free_with_two) context_bytes_ = free_with_one - free_with_two;
        started.push_back(std::move(*second));
      }
      // Someone else's allocations can blur the difference: fall back to what the device
      // had in use with one context, bounded.
      if (context_bytes_ < (size_t{1} << 20) || context_bytes_ > (size_t{8} << 30)) {
        context_bytes_ = std::min<size_t>(
            total_memory_ - std::min<uint64_t>(free_with_one, total_memory_), size_t{8} << 30);
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& w : started) {
        ++worker_starts_;
        worker_start_seconds_ += w->spawn_us() / 1e6;
        idle_.push_back(std::move(w));
        ++live_;
      }
    }
    // Two starts at once: the driver creates contexts one at a time (on an H200, eight
    // starts at once each took 5 s where one alone takes 0.6 s), so more spawners only make
    // each start slower; the second overlaps one start's process setup with another's context.
    const int spawners = std::clamp(options_.prestarted_workers, 1, 2);
    for (int i = 0; i < spawners; ++i) threads_.emplace_back([this] { SpawnLoop(); });
    threads_.emplace_back([this] { JanitorLoop(); });
    return Status();
  }

  kchain::DeviceKind device_kind() const override { return kind_; }
  std::string device_name() const override { return name_; }

  StatusOr<std::shared_ptr<LoadedVersion>> Load(const StoredVersion& stored,
                                                const kchain::Manifest& manifest,
                                                LoadPurpose purpose) override {
    auto version =
        std::make_shared<ProcessVersion>(this, next_function_id_.fetch_add(1), stored, manifest);
    if (purpose == LoadPurpose::kRestore) {
      // Validated when it was deployed, and stored files never change: check it here without
      // running its code; it loads into a worker at its first cold start.
      std::vector<std::string> kernels;
      for (const auto& stage : manifest.spec.chain) kernels.push_back(stage.kernel);
      std::sort(kernels.begin(), kernels.end());
      kernels.erase(std::unique(kernels.begin(), kernels.end()), kernels.end());
      KCHAIN_RETURN_IF_ERROR(kchain::InspectLibrary(stored.library_path, kind_, kernels));
      return std::shared_ptr<LoadedVersion>(std::move(version));
    }
    // A deploy: load it for real, in a worker of its scope (where its instances will run and
    // where only its own tenant can be harmed by what its constructors do); with the instance
    // scope, in a worker of its own, retired afterwards.
    // Reserved while it loads, or another tenant's start could retire it mid-load.
    KCHAIN_ASSIGN_OR_RETURN(auto worker, AcquireWorker(*version, /*reserve_instance=*/true));
    double library_us = 0, constants_us = 0;
    Status loaded =
        EnsureLoaded(*worker, *version, /*validating=*/true, &library_us, &constants_us);
    Unreserve(*worker);
    if (options_.scope == WorkerScope::kInstance) Retire(worker, "");
    if (!loaded.ok()) return loaded;
    version->library_load_us = library_us;
    version->constants_load_us = constants_us;
    return std::shared_ptr<LoadedVersion>(std::move(version));
  }

  StatusOr<std::unique_ptr<ExecInstance>> CreateInstance(
      const std::shared_ptr<LoadedVersion>& loaded_version, StartTimings* timings) override {
    const auto& version = static_cast<const ProcessVersion&>(*loaded_version);
    const auto start = Clock::now();
    KCHAIN_ASSIGN_OR_RETURN(auto worker, AcquireWorker(version, /*reserve_instance=*/true));
    timings->acquire_us = MicrosSince(start);
    auto unreserve = [&] { Unreserve(*worker); };
    double library_us = 0, constants_us = 0;
    Status loaded =
        EnsureLoaded(*worker, version, /*validating=*/false, &library_us, &constants_us);
    if (!loaded.ok()) {
      unreserve();
      return loaded;
    }
    timings->library_us = library_us;

    // The instance's shared memory: a control page, then the input, then the output.
    const FunctionSpec& spec = version.spec();
    const size_t output_offset = kPage + RoundUp(spec.max_input_bytes);
    const size_t shm_bytes = output_offset + RoundUp(spec.out_bytes);
    UniqueFd shm_fd(::memfd_create("kchain-instance", MFD_CLOEXEC));
    if (!shm_fd.valid() || ::ftruncate(shm_fd.get(), static_cast<off_t>(shm_bytes)) != 0) {
      const int err = errno;
      unreserve();
      return ResourceExhaustedError(std::string("shared memory for an instance: ") +
                                    std::strerror(err));
    }
    MappedRegion shm = MappedRegion::MapShared(shm_fd.get(), shm_bytes);
    if (!shm.valid()) {
      const int err = errno;
      unreserve();
      return ResourceExhaustedError(std::string("mmap: ") + std::strerror(err));
    }
    worker::CreateBody body{};
    body.function_id = version.id();
    body.instance_id = next_instance_id_.fetch_add(1);
    body.stage_timing_period = options_.stage_timing_period;
    body.request_spin_us = static_cast<uint32_t>(options_.request_spin.count());
    body.spin_yield = options_.spin_yield ? 1 : 0;
    body.shm_bytes = shm_bytes;
    body.input_offset = kPage;
    body.output_offset = output_offset;
    worker::CreatedBody created{};
    ControlResult result;
    {
      std::lock_guard<std::mutex> control(worker->control_mu);
      const int fds[] = {shm_fd.get()};
      result = worker->Control(MessageType::kCreate, &body, sizeof body, fds, MessageType::kCreated,
                               &created, sizeof created, kControlTimeoutMs,
                               "creating an instance of '" + version.key().name + "'");
    }
    shm_fd.reset();  // the worker has its own copy, or never will
    if (result.kind != ControlResult::Kind::kOk || created.instance_id != body.instance_id) {
      unreserve();
      if (options_.scope == WorkerScope::kInstance) Retire(worker, "");
      return CreateFailure(version, result);
    }
    timings->create_us = created.create_us >= 0 ? created.create_us : 0;
    timings->constants_us = constants_us + (created.upload_us >= 0 ? created.upload_us : 0);
    worker->declared_bytes.fetch_add(shm_bytes);
    worker->last_used_ns.store(NowNs(), std::memory_order_relaxed);
    resident_bytes_.fetch_add(version.instance_device_bytes());
    return std::unique_ptr<ExecInstance>(new ProcessInstance(
        this, std::move(worker), loaded_version, shm.release(), shm_bytes, output_offset));
  }

  bool Ready(std::string* why) const override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty() || !workers_.empty() || last_spawn_error_.ok()) return true;
    *why = "cannot start workers: " + last_spawn_error_.message();
    return false;
  }

  size_t device_memory_in_use() const override { return resident_bytes_.load(); }
  size_t device_memory_total() const override { return total_memory_; }

  size_t overhead_device_bytes() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return context_bytes_ * static_cast<size_t>(live_ + spawning_ + ending_);
  }

  void SetHostReleaser(HostReleaser releaser) override {
    std::lock_guard<std::mutex> lock(mu_);
    releaser_ = std::move(releaser);
  }

  size_t RetireIdleHosts(size_t bytes) override {
    std::unique_lock<std::mutex> lock(mu_);
    size_t freed = 0;
    while (freed < bytes && context_bytes_ > 0 && RetireLeastRecentlyUsed(lock, "memory_budget")) {
      freed += context_bytes_;
    }
    return freed;
  }

  ExecutorStats Stats() const override {
    ExecutorStats stats;
    stats.isolation = "process";
    stats.worker_scope = std::string(WorkerScopeName(options_.scope));
    stats.sandbox = sandbox_;
    const int64_t now = NowNs();
    std::lock_guard<std::mutex> lock(mu_);
    stats.workers_live = live_;
    stats.workers_idle = static_cast<int>(idle_.size());
    stats.workers_bound = static_cast<int>(workers_.size());
    stats.workers_limit = MaxWorkersLocked();
    stats.context_bytes = context_bytes_;
    stats.workers_spawning = spawning_;
    stats.workers_ending = ending_;
    stats.spawn_failures = spawn_failures_;
    stats.last_spawn_error = last_spawn_error_.ok() ? "" : last_spawn_error_.message();
    stats.worker_starts = worker_starts_;
    stats.worker_start_seconds = worker_start_seconds_;
    stats.worker_ends = worker_ends_;
    stats.worker_end_seconds = worker_end_seconds_;
    for (const auto& [reason, n] : restarts_) stats.restarts.emplace_back(reason, n);
    for (const auto& [reason, n] : evictions_) stats.evictions.emplace_back(reason, n);
    stats.last_restart = last_restart_;
    for (const auto& [id, w] : workers_) {
      WorkerInfo info;
      info.id = id;
      info.pid = w->pid();
      info.tenant = w->tenant();
      info.scope_key = w->key();
      info.instances = w->instances;
      info.functions = w->loaded_count.load(std::memory_order_relaxed);
      info.idle_s =
          static_cast<double>(now - w->last_used_ns.load(std::memory_order_relaxed)) / 1e9;
      stats.workers.push_back(std::move(info));
    }
    return stats;
  }

  // --- Called by versions and instances ---

  // A version is gone: unload it from the workers that have it (in the background).
  void ForgetVersion(uint64_t id) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      forgotten_.push_back(id);
    }
    janitor_cv_.notify_one();
  }

  void InstanceGone(BoundWorker& worker, bool resident, size_t device_bytes, size_t shm_bytes) {
    if (resident) resident_bytes_.fetch_sub(device_bytes);
    worker.declared_bytes.fetch_sub(std::min<uint64_t>(shm_bytes, worker.declared_bytes.load()));
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--worker.instances == 0) worker.empty_since = Clock::now();
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
  // A slot to spin in for a reply, or false when reply_spinners are spinning already.
  bool TakeSpinSlot() {
    if (options_.reply_spin.count() == 0) return false;
    if (options_.reply_spinners == 0) return true;
    if (spinners_.fetch_add(1, std::memory_order_relaxed) < options_.reply_spinners) return true;
    spinners_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  void ReturnSpinSlot() {
    if (options_.reply_spinners != 0) spinners_.fetch_sub(1, std::memory_order_relaxed);
  }

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

  // What binds a worker: the scope the version's instances run in.
  std::string KeyFor(const LoadedVersion& version) {
    switch (options_.scope) {
      case WorkerScope::kTenant:
        return version.key().tenant;
      case WorkerScope::kFunction:
        return version.key().tenant + "/" + version.key().name;
      case WorkerScope::kInstance:
        break;
    }
    return version.key().tenant + "/" + version.key().name + "#" +
           std::to_string(next_instance_id_.fetch_add(1));
  }

  // Workers allowed at once: --max-workers, and no more contexts than the budget holds.
  int MaxWorkersLocked() const {
    int limit = options_.max_workers;
    // The device refused one more context while `learned_worker_limit_` workers lived (on an
    // H200 with CUDA's 8 work queues per context, about a hundred fit whatever the free memory):
    // stay at that number for a while, retiring idle workers to make room, instead of failing
    // starts.
    if (LearnedLimitActiveLocked()) limit = std::min(limit, learned_worker_limit_);
    if (context_bytes_ > 0 && options_.device_budget_bytes > 0) {
      limit = std::min<int64_t>(
          limit, std::max<int64_t>(
                     1, static_cast<int64_t>(options_.device_budget_bytes / context_bytes_)));
    }
    return limit;
  }

  // Gives back what AcquireWorker(reserve_instance=true) reserved, when no instance came of it.
  void Unreserve(BoundWorker& worker) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--worker.instances == 0) worker.empty_since = Clock::now();
    }
    cv_.notify_all();
  }

  // Why the limit is what it is, as an eviction reason: what the device took ("device_memory")
  // or --max-workers and the memory budget ("max_workers").
  const char* LimitReasonLocked() const {
    return LearnedLimitActiveLocked() && MaxWorkersLocked() == learned_worker_limit_
               ? "device_memory"
               : "max_workers";
  }

  bool LearnedLimitActiveLocked() const {
    return learned_worker_limit_ > 0 && Clock::now() - learned_at_ < kLearnedLimitTtl;
  }

  // A worker for `version`'s scope: one already bound to it, else a pre-initialized one
  // bound now, else a new one (retiring the least recently used idle worker when the limit
  // is reached or a context cannot be created). With `reserve_instance`, the worker counts
  // one more instance before it is returned, so that it is not retired meanwhile.
  StatusOr<std::shared_ptr<BoundWorker>> AcquireWorker(const LoadedVersion& version,
                                                       bool reserve_instance) {
    const std::string key = KeyFor(version);
    // A context may take seconds to start when many start at once (the driver serializes
    // them), so a start is awaited for up to kControlTimeoutMs; a worker to come free, only as
    // long as an invocation waits for an instance (--invoke-timeout-ms, docs/api.md).
    const auto now = Clock::now();
    const auto deadline =
        now + std::max(options_.run_timeout, std::chrono::milliseconds(kControlTimeoutMs));
    const auto busy_deadline = now + options_.run_timeout;
    std::unique_lock<std::mutex> lock(mu_);
    int evictions_after_failure = 0;
    while (true) {
      if (stopping_) return UnavailableError("the server is shutting down");
      // A worker of this scope, the least loaded; another is started only when the scope may
      // have more and every one it has is hosting something.
      std::shared_ptr<BoundWorker> best;
      int count = 0;
      for (auto [it, end] = by_key_.equal_range(key); it != end; ++it) {
        const auto& w = workers_.at(it->second);
        if (w->gone() || w->retired || w->releasing.load()) continue;
        ++count;
        if (best == nullptr || w->instances < best->instances) best = w;
      }
      if (best != nullptr && (count >= options_.workers_per_scope || best->instances == 0)) {
        if (reserve_instance) ++best->instances;
        best->last_used_ns.store(NowNs(), std::memory_order_relaxed);
        return best;
      }
      // A new worker for the scope: a pre-initialized one if there is one.
      if (!idle_.empty()) {
        auto process = std::move(idle_.front());
        idle_.pop_front();
        auto bound = std::make_shared<BoundWorker>(next_worker_id_++, key, version.key().tenant,
                                                   std::move(process));
        workers_[bound->id()] = bound;
        by_key_.emplace(key, bound->id());
        if (reserve_instance) ++bound->instances;
        cv_.notify_all();  // the pool has room to refill
        return bound;
      }
      if (live_ + spawning_ + ending_ < MaxWorkersLocked()) {
        ++waiting_;
        cv_.notify_all();
        const uint64_t failures = spawn_failures_;
        // Any change wakes this and the loop looks again: the worker started for this call
        // may go to a caller that came later and found it idle, and then, at the limit, this
        // one must retire another rather than wait for a start that will not come.
        const bool woke = cv_.wait_until(lock, deadline) == std::cv_status::no_timeout;
        --waiting_;
        if (!idle_.empty() || stopping_) continue;
        if (spawn_failures_ != failures) {
          // Often: the device takes no more contexts. Make room, then try again. Where the
          // failure lowered the limit, the branch below retires one worker for this start;
          // retiring here too would retire two (with many callers waiting, dozens).
          if (evictions_after_failure++ < kEvictionsAfterSpawnFailure &&
              (live_ + spawning_ + ending_ >= MaxWorkersLocked() ||
               RetireLeastRecentlyUsed(lock, "device_memory"))) {
            continue;
          }
          return UnavailableError("cannot start a worker: " + last_spawn_error_.message());
        }
        if (!woke) return UnavailableError("no worker became ready in time");
        continue;
      }
      // At the limit: retire the least recently used worker whose instances are all idle.
      if (RetireLeastRecentlyUsed(lock, LimitReasonLocked())) continue;
      // Every worker is busy. A run ending is the scheduler's news and wakes nobody here (the
      // hot path stays free of this lock), so look again every few milliseconds, up to the
      // deadline.
      if (Clock::now() >= busy_deadline) {
        return ResourceExhaustedError("all " + std::to_string(MaxWorkersLocked()) +
                                      " worker processes are busy (--max-workers)");
      }
      cv_.wait_until(lock, std::min(busy_deadline, Clock::now() + kBusyRecheck));
    }
  }

  // Retires the least recently used bound worker whose instances are all idle (the
  // scheduler drops them first). Called and returns with `lock` held (released meanwhile).
  bool RetireLeastRecentlyUsed(std::unique_lock<std::mutex>& lock, const char* reason) {
    std::vector<std::shared_ptr<BoundWorker>> candidates;
    for (auto& [id, w] : workers_) {
      if (!w->retired && !w->releasing.load()) candidates.push_back(w);
    }
    std::sort(candidates.begin(), candidates.end(), [](const auto& a, const auto& b) {
      return a->last_used_ns.load() < b->last_used_ns.load();
    });
    for (auto& w : candidates) {
      if (TryRetire(lock, w, reason)) return true;
    }
    return false;
  }

  // Retires `w` if the scheduler can drop all its instances (none is busy). Called and
  // returns with `lock` held (released meanwhile).
  bool TryRetire(std::unique_lock<std::mutex>& lock, const std::shared_ptr<BoundWorker>& w,
                 const char* reason) {
    if (w->retired || w->releasing.load()) return false;
    w->releasing.store(true);
    HostReleaser releaser = releaser_;
    lock.unlock();
    const bool released = !releaser || releaser(w->id());
    lock.lock();
    if (released && w->instances == 0 && !w->retired) {
      RetireLocked(w, reason);
      lock.unlock();
      const double seconds = EndRetired(*w);
      lock.lock();
      EndedLocked(seconds);
      return true;
    }
    w->releasing.store(false);
    return false;
  }

  // Takes `w` out of service (it ends outside the lock). `reason` counts an eviction.
  void RetireLocked(const std::shared_ptr<BoundWorker>& w, const char* reason) {
    w->retired = true;
    workers_.erase(w->id());
    for (auto [it, end] = by_key_.equal_range(w->key()); it != end; ++it) {
      if (it->second == w->id()) {
        by_key_.erase(it);
        break;
      }
    }
    --live_;
    ++ending_;
    if (reason != nullptr && *reason != '\0') ++evictions_[reason];
    cv_.notify_all();
  }

  // Ends a retired worker (outside the lock): kills it and waits until it is reaped, which
  // is when the driver has torn its context down. Returns how long that took, in seconds.
  static double EndRetired(BoundWorker& w) {
    const auto start = Clock::now();
    w.End("", "");
    return std::chrono::duration<double>(Clock::now() - start).count();
  }

  // A retired worker has been reaped: its context is gone, so another may take its place.
  // Until then it counts against the limit, or the next start would race its teardown (the
  // device refuses a context while the last one still holds its slot and memory).
  void EndedLocked(double end_seconds) {
    --ending_;
    ++worker_ends_;
    worker_end_seconds_ += end_seconds;
    cv_.notify_all();
  }

  void Retire(const std::shared_ptr<BoundWorker>& w, const char* reason) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (w->retired) return;
      RetireLocked(w, reason);
    }
    const double seconds = EndRetired(*w);
    std::lock_guard<std::mutex> lock(mu_);
    EndedLocked(seconds);
  }

  // Loads `version` into `worker` unless it is there already.
  Status EnsureLoaded(BoundWorker& worker, const ProcessVersion& version, bool validating,
                      double* library_us, double* constants_us) {
    std::lock_guard<std::mutex> control(worker.control_mu);
    if (worker.loaded.count(version.id()) != 0) return Status();
    UniqueFd library_fd(::open(version.library_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!library_fd.valid()) {
      return InternalError("cannot open '" + version.library_path + "': " + std::strerror(errno));
    }
    UniqueFd constants_fd;
    if (!version.constants_path.empty()) {
      constants_fd.reset(::open(version.constants_path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!constants_fd.valid()) {
        return InternalError("cannot open '" + version.constants_path +
                             "': " + std::strerror(errno));
      }
    }
    auto sealed_manifest = worker::SealedMemoryFile("kchain-manifest", version.manifest_json);
    if (!sealed_manifest.ok()) return sealed_manifest.status();
    const UniqueFd manifest_fd(*sealed_manifest);
    worker::LoadBody body{};
    body.function_id = version.id();
    body.has_constants = constants_fd.valid();
    body.manifest_bytes = static_cast<uint32_t>(version.manifest_json.size());
    std::vector<int> fds = {library_fd.get(), manifest_fd.get()};
    if (constants_fd.valid()) fds.push_back(constants_fd.get());
    worker::LoadedBody loaded{};
    const std::string doing =
        "loading kernel library '" + version.library_path + "' (" + version.key().str() + ")";
    ControlResult result =
        worker.Control(MessageType::kLoad, &body, sizeof body, fds, MessageType::kLoaded, &loaded,
                       sizeof loaded, kControlTimeoutMs, doing);
    switch (result.kind) {
      case ControlResult::Kind::kOk:
        if (loaded.function_id != version.id()) break;
        worker.loaded.insert(version.id());
        worker.loaded_count.store(static_cast<int>(worker.loaded.size()));
        worker.declared_bytes.fetch_add(version.library_bytes + version.spec().constant_bytes);
        *library_us = loaded.library_us >= 0 ? loaded.library_us : 0;
        *constants_us = loaded.constants_us >= 0 ? loaded.constants_us : 0;
        return Status();
      case ControlResult::Kind::kReported:
        return Status(result.status.code(), Relabel(result.status.message(), version.library_path));
      case ControlResult::Kind::kDied:
        return LoadDeathStatus(version, result, validating);
      case ControlResult::Kind::kProtocol: {
        // A library can write to the worker's socket from its constructors: at a deploy, a
        // forged or malformed reply is the library's doing. At a cold start the library was
        // validated; what broke the shared worker is its tenant's code, not the request.
        const std::string what = "kernel library '" + version.library_path +
                                 "' broke the worker protocol while loading (" +
                                 result.status.message() + ")";
        return validating ? InvalidArgumentError(what)
                          : KernelError(
                                "its worker broke the protocol while loading kernel "
                                "library '" +
                                version.library_path + "' for a cold start (" +
                                result.status.message() + "); the worker is replaced");
      }
    }
    worker.End("protocol", "was killed: it answered LOAD for another function");
    return InternalError("the worker answered LOAD for another function");
  }

  // What a worker's death while loading means. At a deploy's validation, a crash is the
  // library's doing (its constructors ran); at a cold start the library was validated, so a
  // crash is its code failing (502), and a worker killed from outside (SIGKILL: the OOM
  // killer, an operator) or gone silent is the server's problem (503), never the client's.
  static Status LoadDeathStatus(const ProcessVersion& version, const ControlResult& result,
                                bool validating) {
    const std::string what = "kernel library '" + version.library_path + "'";
    if (result.timed_out) {
      return UnavailableError("the worker loading " + what + " " + result.death.description);
    }
    if (result.death.reason == "killed") {
      return UnavailableError("the worker loading " + what + " " + result.death.description +
                              " (not the library's doing as far as the server can tell); retry");
    }
    if (validating) {
      return InvalidArgumentError(what + " killed the worker while loading: it " +
                                  result.death.description);
    }
    return KernelError(what + " killed the worker while loading for a cold start: it " +
                       result.death.description + "; the worker is replaced");
  }

  static Status CreateFailure(const ProcessVersion& version, const ControlResult& result) {
    const std::string what = "starting an instance of '" + version.key().name + "'";
    switch (result.kind) {
      case ControlResult::Kind::kReported:
        return result.status;
      case ControlResult::Kind::kDied:
        return result.death.reason == "killed" || result.timed_out
                   ? UnavailableError("its worker " + result.death.description + " while " + what)
                   : KernelError("its worker " + result.death.description + " while " + what);
      case ControlResult::Kind::kProtocol:
        return KernelError("its worker broke the protocol while " + what + " (" +
                           result.status.message() + ")");
      case ControlResult::Kind::kOk:
        break;
    }
    return InternalError("the worker created another instance while " + what);
  }

  // Keeps the idle pool at its target; spawns for callers waiting on an empty pool too.
  void SpawnLoop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      const int want = options_.prestarted_workers + waiting_;
      if (static_cast<int>(idle_.size()) + spawning_ >= want ||
          live_ + spawning_ + ending_ >= MaxWorkersLocked()) {
        cv_.wait(lock);
        continue;
      }
      ++spawning_;
      lock.unlock();
      auto worker = WorkerProcess::Spawn(options_.launch);
      lock.lock();
      --spawning_;
      if (worker.ok()) {
        spawned_since_failure_ = true;
        ++worker_starts_;
        worker_start_seconds_ += (*worker)->spawn_us() / 1e6;
        idle_.push_back(std::move(*worker));
        ++live_;
        last_spawn_error_ = Status();
      } else {
        last_spawn_error_ = worker.status();
        ++spawn_failures_;
        // The contexts there were: the live and ending workers', and those of the other
        // starts under way. Starts that fail together (several spawners at the device's
        // limit) each see fewer under way; the first one's count stands until a start
        // succeeds again, or the limit would fall a step with each of them.
        const int contexts = live_ + ending_ + spawning_;
        if (contexts > 0) {
          const bool same_burst = LearnedLimitActiveLocked() && !spawned_since_failure_;
          learned_worker_limit_ = same_burst ? std::max(learned_worker_limit_, contexts) : contexts;
          learned_at_ = Clock::now();
        }
        spawned_since_failure_ = false;
        cv_.notify_all();
        cv_.wait_for(lock, std::chrono::seconds(1));  // back off
      }
      cv_.notify_all();
    }
  }

  // Unloads forgotten versions from the workers that have them, and retires bound workers
  // left with no instance for the idle TTL.
  void JanitorLoop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      janitor_cv_.wait_for(lock, std::chrono::milliseconds(500));
      if (stopping_) break;
      std::vector<uint64_t> forgotten;
      forgotten.swap(forgotten_);
      std::vector<std::shared_ptr<BoundWorker>> workers, expired;
      const auto now = Clock::now();
      for (auto& [id, w] : workers_) {
        workers.push_back(w);
        if (w->instances == 0 && !w->releasing.load() &&
            now - w->empty_since >= options_.idle_worker_ttl) {
          expired.push_back(w);
        }
      }
      for (auto& w : expired) RetireLocked(w, "idle");
      lock.unlock();
      std::vector<double> end_seconds;
      for (auto& w : expired) end_seconds.push_back(EndRetired(*w));
      lock.lock();
      for (double seconds : end_seconds) EndedLocked(seconds);
      lock.unlock();
      // Workers past their CPU budget are recycled once all their instances are idle.
      if (options_.cpu_seconds_budget != 0) {
        for (auto& w : workers) {
          if (w->gone() || w->CpuSeconds() < static_cast<double>(options_.cpu_seconds_budget)) {
            continue;
          }
          lock.lock();
          TryRetire(lock, w, "cpu_budget");
          lock.unlock();
        }
      }
      for (uint64_t id : forgotten) {
        for (auto& w : workers) {
          if (w->gone()) continue;
          std::lock_guard<std::mutex> control(w->control_mu);
          if (w->loaded.erase(id) == 0) continue;
          w->loaded_count.store(static_cast<int>(w->loaded.size()));
          worker::UnloadBody body{id};
          (void)w->Control(MessageType::kUnload, &body, sizeof body, {}, MessageType::kUnloaded,
                           nullptr, 0, kControlTimeoutMs, "unloading a function");
        }
      }
      lock.lock();
    }
  }

  ProcessExecutorOptions options_;
  DeviceKind kind_ = DeviceKind::kHost;
  std::string name_;
  std::string sandbox_;
  size_t total_memory_ = 0;
  size_t context_bytes_ = 0;  // set at Start()
  std::atomic<size_t> resident_bytes_{0};
  std::atomic<int> spinners_{0};  // invoking threads spinning for a reply now
  std::atomic<uint64_t> next_function_id_{1};
  std::atomic<uint64_t> next_instance_id_{1};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable janitor_cv_;
  std::deque<std::unique_ptr<WorkerProcess>> idle_;
  std::map<uint64_t, std::shared_ptr<BoundWorker>> workers_;  // bound, by id
  std::multimap<std::string, uint64_t> by_key_;               // bound, by scope key
  uint64_t next_worker_id_ = 1;
  int live_ = 0;    // idle and bound
  int ending_ = 0;  // retired, not yet reaped
  int spawning_ = 0;
  int waiting_ = 0;
  uint64_t spawn_failures_ = 0;
  Status last_spawn_error_;
  uint64_t worker_starts_ = 0, worker_ends_ = 0;
  double worker_start_seconds_ = 0, worker_end_seconds_ = 0;
  // How many contexts there were when one could last not be created (0: never), and when.
  int learned_worker_limit_ = 0;
  Clock::time_point learned_at_;
  bool spawned_since_failure_ = true;
  static constexpr auto kLearnedLimitTtl = std::chrono::seconds(60);
  // Workers one start may retire, one after another, while new contexts keep failing.
  static constexpr int kEvictionsAfterSpawnFailure = 8;
  // How often a caller looks again for a worker to retire while every worker is busy.
  static constexpr auto kBusyRecheck = std::chrono::milliseconds(5);
  bool stopping_ = false;
  HostReleaser releaser_;
  std::vector<uint64_t> forgotten_;
  std::map<std::string, uint64_t> restarts_;
  std::map<std::string, uint64_t> evictions_;
  std::string last_restart_;
  std::vector<std::thread> threads_;
};

ProcessVersion::~ProcessVersion() { executor_->ForgetVersion(id_); }

// --- ProcessInstance ---

ProcessInstance::ProcessInstance(ProcessExecutor* executor, std::shared_ptr<BoundWorker> worker,
                                 std::shared_ptr<LoadedVersion> version, std::byte* shm,
                                 size_t shm_bytes, size_t output_offset)
    : executor_(executor),
      worker_(std::move(worker)),
      version_(std::move(version)),
      shm_(shm),
      shm_bytes_(shm_bytes),
      output_offset_(output_offset) {}

ProcessInstance::~ProcessInstance() {
  // A retiring worker is about to end: its instances need no DESTROY each.
  if (!broken_ && !worker_->gone() && !worker_->releasing.load()) {
    worker::RanBody ran{};
    std::string message;
    (void)Call(Op::kDestroy, 0, std::chrono::milliseconds(kDestroyTimeoutMs), &ran, &message);
  }
  ::munmap(shm_, shm_bytes_);
  executor_->InstanceGone(*worker_, resident_, version_->instance_device_bytes(), shm_bytes_);
}

std::string ProcessInstance::StageName() const {
  const uint32_t stage = worker::PageWord(shm_, worker::kControlProgressOffset).load();
  const auto& chain = version_->spec().chain;
  if (stage == 0 || stage > chain.size()) return "chain " + kchain::ChainToString(version_->spec());
  return "kernel '" + chain[stage - 1].kernel + "' (stage " + std::to_string(stage) + " of " +
         std::to_string(chain.size()) + ")";
}

Status ProcessInstance::Died(const std::string& reason, const std::string& cause) {
  broken_ = true;
  const auto [death, first] = worker_->End(reason, cause);
  const std::string message = StageName() + " of '" + version_->key().name +
                              "' failed: its worker " + death.description +
                              "; the worker is replaced";
  // One restart per worker, counted by whoever saw it first.
  if (first) executor_->RecordRestart(death.reason, version_->key(), message);
  return KernelError(message);
}

Status ProcessInstance::Call(Op op, uint64_t input_bytes, std::chrono::milliseconds timeout,
                             worker::RanBody* ran, std::string* message) {
  using worker::PageWord;
  if (broken_) return UnavailableError("this instance's worker is gone");
  if (++sequence_ == 0) ++sequence_;  // 0 is the page's initial value: never a request
  const uint32_t seq = sequence_;
  worker::PageWord64(shm_, worker::kControlRequestBytesOffset)
      .store(input_bytes, std::memory_order_relaxed);
  PageWord(shm_, worker::kControlRequestOpOffset)
      .store(static_cast<uint32_t>(op), std::memory_order_relaxed);
  auto& requested = PageWord(shm_, worker::kControlRequestSequenceOffset);
  requested.store(seq, std::memory_order_seq_cst);
  if (PageWord(shm_, worker::kControlWorkerSleepingOffset).load(std::memory_order_seq_cst) != 0) {
    worker::FutexWake(&requested);
  }

  const auto& options = executor_->options();
  const auto started = Clock::now();
  auto& replied = PageWord(shm_, worker::kControlReplySequenceOffset);
  // Short runs: spin on the control page, while few other threads are spinning too.
  bool done = false;
  if (executor_->TakeSpinSlot()) {
    const auto spin_until = started + options.reply_spin;
    while (true) {
      if (replied.load(std::memory_order_acquire) == seq) {
        done = true;
        break;
      }
      if (Clock::now() >= spin_until) break;
      worker::SpinPause(options.spin_yield);
    }
    executor_->ReturnSpinSlot();
  }
  if (!done) {
    // Longer ones: sleep on the futex, watching the worker and its memory every 20 ms.
    const auto deadline = started + timeout;
    const uint64_t limit = options.memory_limit_bytes;
    auto& waiting = PageWord(shm_, worker::kControlGatewayWaitingOffset);
    waiting.store(1, std::memory_order_seq_cst);
    int slice_ms = 2;
    while (true) {
      const uint32_t now_replied = replied.load(std::memory_order_seq_cst);
      if (now_replied == seq) break;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      worker::FutexWait(&replied, now_replied,
                        static_cast<int>(std::clamp<int64_t>(left.count(), 1, slice_ms)));
      slice_ms = 20;
      if (replied.load(std::memory_order_acquire) == seq) break;
      if (!worker_->Alive()) {
        waiting.store(0, std::memory_order_relaxed);
        return Died();
      }
      if (op == Op::kRun && limit != 0) {
        const uint64_t rss = worker_->ResidentBytes();
        const uint64_t rss_limit = worker_->baseline_rss() + worker_->declared_bytes.load() + limit;
        if (rss > rss_limit) {
          waiting.store(0, std::memory_order_relaxed);
          return Died("memory_limit", "exceeded its memory limit (" + std::to_string(rss >> 20) +
                                          " MiB resident, limit " +
                                          std::to_string(rss_limit >> 20) + " MiB) while " +
                                          StageName() + " of '" + version_->key().name +
                                          "' ran, and was killed");
        }
      }
      if (Clock::now() >= deadline) {
        waiting.store(0, std::memory_order_relaxed);
        const Status died =
            Died("timeout", "was killed: " + StageName() + " of '" + version_->key().name +
                                "' did not finish within the invocation timeout (" +
                                std::to_string(timeout.count()) + " ms)");
        return DeadlineExceededError(died.message());
      }
    }
    waiting.store(0, std::memory_order_relaxed);
  }
  // The reply, copied out of shared memory before anything in it is believed.
  std::memcpy(ran, shm_ + worker::kControlReplyOffset, sizeof *ran);
  if (Status valid = worker::CheckRan(*ran);
      !valid.ok() || ran->sequence != seq || ran->op != static_cast<uint32_t>(op)) {
    return Died("protocol", "was killed: its reply was malformed (" +
                                (valid.ok() ? std::string("another request's") : valid.message()) +
                                ")");
  }
  if (ran->status_code != 0) *message = worker::ControlPageText(shm_);
  if (ran->broken) {
    // The device context in the worker is gone; the worker exits. Only this worker, though.
    broken_ = true;
    const auto [death, first] =
        worker_->End("device_fault", "lost its device context: " + *message);
    (void)death;
    *message +=
        " (only this worker's device context was lost: the worker is replaced, other "
        "workers' functions are unaffected)";
    if (first) executor_->RecordRestart("device_fault", version_->key(), *message);
  }
  return Status();
}

Status ProcessInstance::Run(size_t input_bytes, kchain::RunTimings* timings) {
  worker::RanBody ran{};
  std::string message;
  KCHAIN_RETURN_IF_ERROR(
      Call(Op::kRun, input_bytes, executor_->options().run_timeout, &ran, &message));
  worker_->last_used_ns.store(NowNs(), std::memory_order_relaxed);
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
  // The worker knows its library as /proc/self/fd/N; say which stored library it is.
  return worker::WorkerFailure(
      ran.status_code,
      Relabel(std::move(message), static_cast<const ProcessVersion&>(*version_).library_path),
      worker::WorkerStep::kRun);
}

Status ProcessInstance::Park() {
  if (broken_) return UnavailableError("this instance's worker is gone");
  if (!resident_) return Status();
  worker::RanBody ran{};
  std::string message;
  KCHAIN_RETURN_IF_ERROR(
      Call(Op::kPark, 0, std::chrono::milliseconds(kControlTimeoutMs), &ran, &message));
  if (ran.status_code != 0) {
    return worker::WorkerFailure(ran.status_code, std::move(message), worker::WorkerStep::kRun);
  }
  resident_ = false;
  executor_->ResidentChange(-static_cast<int64_t>(version_->instance_device_bytes()));
  return Status();
}

Status ProcessInstance::Wake(StartTimings* timings) {
  if (broken_) return UnavailableError("this instance's worker is gone");
  if (resident_) return Status();
  worker::RanBody ran{};
  std::string message;
  KCHAIN_RETURN_IF_ERROR(
      Call(Op::kWake, 0, std::chrono::milliseconds(kControlTimeoutMs), &ran, &message));
  if (ran.status_code != 0) {
    return worker::WorkerFailure(ran.status_code, std::move(message), worker::WorkerStep::kRun);
  }
  timings->create_us = ran.create_us;
  timings->constants_us = ran.upload_us;
  resident_ = true;
  executor_->ResidentChange(static_cast<int64_t>(version_->instance_device_bytes()));
  worker_->last_used_ns.store(NowNs(), std::memory_order_relaxed);
  return Status();
}

}  // namespace

std::string_view WorkerScopeName(WorkerScope scope) {
  switch (scope) {
    case WorkerScope::kTenant:
      return "tenant";
    case WorkerScope::kFunction:
      return "function";
    case WorkerScope::kInstance:
      return "instance";
  }
  return "tenant";
}

StatusOr<WorkerScope> ParseWorkerScope(std::string_view name) {
  if (name == "tenant") return WorkerScope::kTenant;
  if (name == "function") return WorkerScope::kFunction;
  if (name == "instance") return WorkerScope::kInstance;
  return InvalidArgumentError("'" + std::string(name) + "' is not tenant, function or instance");
}

StatusOr<std::unique_ptr<Executor>> MakeProcessExecutor(ProcessExecutorOptions options) {
  auto executor = std::make_unique<ProcessExecutor>(std::move(options));
  KCHAIN_RETURN_IF_ERROR(executor->Start());
  return std::unique_ptr<Executor>(std::move(executor));
}

}  // namespace kchain::gateway
