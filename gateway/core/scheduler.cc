#include "gateway/core/scheduler.h"

#include <algorithm>

#include "runtime/clock.h"

namespace kchain::gateway {
namespace {

using Clock = std::chrono::steady_clock;

std::string Bytes(size_t n) { return std::to_string(n) + " bytes"; }

}  // namespace

std::string_view StartTypeName(StartType type) {
  switch (type) {
    case StartType::kCold:
      return "cold";
    case StartType::kWarm:
      return "warm";
    case StartType::kHot:
      return "hot";
  }
  return "cold";
}

// One function's instances. Guarded by Scheduler::mu_.
struct Scheduler::Pool {
  FunctionKey key;
  std::shared_ptr<LoadedVersion> current;
  std::shared_ptr<FunctionMetrics> metrics;
  bool removed = false;
  bool unloaded = false;
  std::vector<std::unique_ptr<Slot>> idle_resident;  // back = most recently used
  std::vector<std::unique_ptr<Slot>> idle_parked;    // back = most recently parked
  int total = 0;
  int busy = 0;
  int waiting = 0;
  PoolStats counters;  // only starts/parks/expired are kept here
  std::condition_variable cv;
};

// One instance and its bookkeeping.
struct Scheduler::Slot {
  std::unique_ptr<ExecInstance> instance;
  std::shared_ptr<LoadedVersion> version;
  std::shared_ptr<Pool> pool;
  size_t bytes = 0;  // device bytes when resident
  bool resident = false;
  Clock::time_point last_used;  // when it was released or parked
  std::list<Slot*>::iterator lru_pos;
};

// --- Lease ---

Scheduler::Lease::Lease(Scheduler* scheduler, std::unique_ptr<Slot> slot, StartType start,
                        double queue_us, StartTimings start_timings)
    : scheduler_(scheduler),
      slot_(std::move(slot)),
      start_(start),
      queue_us_(queue_us),
      start_timings_(start_timings) {}

Scheduler::Lease::Lease(Lease&& other) noexcept
    : scheduler_(other.scheduler_),
      slot_(std::move(other.slot_)),
      start_(other.start_),
      queue_us_(other.queue_us_),
      start_timings_(other.start_timings_) {}

Scheduler::Lease::~Lease() {
  if (slot_ != nullptr) scheduler_->Release(std::move(slot_));
}

ExecInstance& Scheduler::Lease::instance() { return *slot_->instance; }
const LoadedVersion& Scheduler::Lease::version() const { return *slot_->version; }
FunctionMetrics* Scheduler::Lease::metrics() const { return slot_->pool->metrics.get(); }

// --- Scheduler ---

Scheduler::Scheduler(Executor* executor, SchedulerOptions options)
    : executor_(executor), options_(options) {
  executor_->SetHostReleaser([this](uint64_t host) { return DropIdleOnHost(host); });
  reaper_ = std::thread([this] { ReaperLoop(); });
}

Scheduler::~Scheduler() {
  executor_->SetHostReleaser(nullptr);
  std::vector<std::unique_ptr<Slot>> doomed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    shutting_down_ = true;
    for (auto& [key, pool] : pools_) TakeIdleLocked(*pool, &doomed);
    pools_.clear();
  }
  reaper_cv_.notify_all();
  reaper_.join();
  doomed.clear();  // destroy outside the lock
}

void Scheduler::TakeIdleLocked(Pool& pool, std::vector<std::unique_ptr<Slot>>* out) {
  for (auto& slot : pool.idle_resident) {
    lru_.erase(slot->lru_pos);
    resident_bytes_ -= slot->bytes;
    out->push_back(std::move(slot));
  }
  for (auto& slot : pool.idle_parked) out->push_back(std::move(slot));
  pool.total -= static_cast<int>(pool.idle_resident.size() + pool.idle_parked.size());
  pool.idle_resident.clear();
  pool.idle_parked.clear();
}

void Scheduler::Activate(std::shared_ptr<LoadedVersion> version,
                         std::shared_ptr<FunctionMetrics> metrics) {
  std::vector<std::unique_ptr<Slot>> doomed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& pool = pools_[version->key()];
    if (pool == nullptr) {
      pool = std::make_shared<Pool>();
      pool->key = version->key();
    }
    TakeIdleLocked(*pool, &doomed);  // instances of the previous version
    pool->current = std::move(version);
    pool->metrics = std::move(metrics);
    pool->removed = false;
    pool->unloaded = false;
    pool->cv.notify_all();  // waiters may now create instances of the new version
  }
}

void Scheduler::Remove(const FunctionKey& key) {
  std::vector<std::unique_ptr<Slot>> doomed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pools_.find(key);
    if (it == pools_.end()) return;
    TakeIdleLocked(*it->second, &doomed);
    it->second->removed = true;
    it->second->cv.notify_all();
    pools_.erase(it);
  }
}

bool Scheduler::Unload(const FunctionKey& key) {
  std::vector<std::unique_ptr<Slot>> doomed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pools_.find(key);
    if (it == pools_.end()) return false;
    TakeIdleLocked(*it->second, &doomed);
    it->second->unloaded = true;
    it->second->cv.notify_all();  // waiters give up
  }
  return true;  // `doomed` is destroyed here, outside the lock
}

bool Scheduler::Reload(const FunctionKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pools_.find(key);
  if (it == pools_.end()) return false;
  it->second->unloaded = false;
  return true;
}

void Scheduler::MarkBusyLocked(const Slot& slot) {
  const uint64_t host = slot.instance->host();
  if (host != 0) ++busy_by_host_[host];
}

void Scheduler::UnmarkBusyLocked(const Slot& slot) {
  const uint64_t host = slot.instance->host();
  if (host == 0) return;
  auto it = busy_by_host_.find(host);
  if (it != busy_by_host_.end() && --it->second <= 0) busy_by_host_.erase(it);
}

bool Scheduler::DropIdleOnHost(uint64_t host) {
  std::vector<std::unique_ptr<Slot>> doomed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto busy = busy_by_host_.find(host); busy != busy_by_host_.end() && busy->second > 0) {
      return false;
    }
    for (auto& [key, pool] : pools_) {
      for (auto* list : {&pool->idle_resident, &pool->idle_parked}) {
        for (auto it = list->begin(); it != list->end();) {
          if ((*it)->instance->host() != host) {
            ++it;
            continue;
          }
          Slot& slot = **it;
          if (list == &pool->idle_resident) {
            lru_.erase(slot.lru_pos);
            resident_bytes_ -= slot.bytes;
          }
          --pool->total;
          ++pool->counters.retired;
          doomed.push_back(std::move(*it));
          it = list->erase(it);
          pool->cv.notify_one();  // a waiter may now create an instance elsewhere
        }
      }
    }
  }
  return true;  // `doomed` is destroyed here, outside the lock
}

Status Scheduler::ReserveLocked(size_t bytes, std::vector<std::unique_ptr<Slot>>* victims) {
  const size_t overhead = executor_->overhead_device_bytes();
  const size_t budget = options_.memory_budget_bytes == 0 ? 0
                        : options_.memory_budget_bytes > overhead
                            ? options_.memory_budget_bytes - overhead
                            : 1;  // contexts hold it all: nothing fits until one is retired
  if (budget != 0) {
    if (bytes > budget) {
      return ResourceExhaustedError("an instance needs " + Bytes(bytes) +
                                    ", more than the whole device memory budget (" + Bytes(budget) +
                                    ")");
    }
    while (resident_bytes_ + bytes > budget && !lru_.empty()) {
      Slot* victim = lru_.front();
      lru_.pop_front();
      Pool& pool = *victim->pool;
      auto it = std::find_if(pool.idle_resident.begin(), pool.idle_resident.end(),
                             [victim](const auto& s) { return s.get() == victim; });
      victims->push_back(std::move(*it));
      pool.idle_resident.erase(it);
      resident_bytes_ -= victim->bytes;
    }
    if (resident_bytes_ + bytes > budget) {
      // Nothing idle is left to park; put the victims back where they were.
      for (auto& slot : *victims) {
        resident_bytes_ += slot->bytes;
        slot->lru_pos = lru_.insert(lru_.begin(), slot.get());
        slot->pool->idle_resident.insert(slot->pool->idle_resident.begin(), std::move(slot));
      }
      victims->clear();
      return ResourceExhaustedError("the device memory budget (" + Bytes(budget) +
                                    ") is held by busy instances (" + Bytes(resident_bytes_) +
                                    "); an instance needs " + Bytes(bytes) + " more");
    }
  }
  resident_bytes_ += bytes;
  return Status();
}

void Scheduler::ParkVictims(std::vector<std::unique_ptr<Slot>> victims) {
  if (victims.empty()) return;
  // Victims are out of every list (their bytes already released); they still count in their
  // pool's total. Park them outside the lock, then file them as parked.
  std::vector<bool> parked(victims.size());
  for (size_t i = 0; i < victims.size(); ++i) {
    parked[i] = victims[i]->instance->Park().ok() && !victims[i]->instance->broken();
  }
  std::vector<std::unique_ptr<Slot>> doomed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto now = Clock::now();
    for (size_t i = 0; i < victims.size(); ++i) {
      auto& slot = victims[i];
      Pool& pool = *slot->pool;
      if (parked[i] && !pool.removed && !pool.unloaded && slot->version == pool.current &&
          !stopping_) {
        slot->resident = false;
        slot->last_used = now;
        ++pool.counters.parks;
        pool.idle_parked.push_back(std::move(slot));
      } else {
        --pool.total;
        doomed.push_back(std::move(slot));
      }
      pool.cv.notify_one();
    }
  }
  // `doomed` is destroyed here, outside the lock.
}

// The state of one Acquire, shared by its paths.
struct Scheduler::Acquiring {
  const FunctionKey& key;
  Clock::time_point start;
  Clock::time_point deadline;
  std::shared_ptr<Pool> pool;
  std::unique_lock<std::mutex>& lock;
  // Idle instances found dead: Acquire destroys them once the lock is released.
  std::vector<std::unique_ptr<Slot>>& dead;
  bool retired_hosts = false;  // RetireHostsForRoomOnce has run
  bool queued = false;         // counted against the queue's bound once
};

StatusOr<Scheduler::Lease> Scheduler::Acquire(const FunctionKey& key) {
  const auto start = Clock::now();
  // Declared before the lock so that they are destroyed after it is released.
  std::vector<std::unique_ptr<Slot>> dead;
  std::unique_lock<std::mutex> lock(mu_);
  if (shutting_down_) return UnavailableError("the server is shutting down");
  auto found = pools_.find(key);
  if (found == pools_.end()) return NotFoundError("no function '" + key.name + "'");
  Acquiring a{key, start, start + options_.invoke_timeout, found->second, lock, dead};

  while (true) {
    if (a.pool->removed) return NotFoundError("function '" + key.name + "' was deleted");
    if (a.pool->unloaded) {
      return UnavailableError("function '" + key.name + "' is unloaded; load it to invoke it");
    }
    std::optional<StatusOr<Lease>> lease;
    PathResult step = TakeHotLocked(a, &lease);
    if (step == PathResult::kNone) step = WakeWarm(a, &lease);
    if (step == PathResult::kNone) step = StartCold(a, &lease);
    if (step == PathResult::kDone) return std::move(*lease);
    if (step == PathResult::kLookAgain) continue;
    KCHAIN_RETURN_IF_ERROR(WaitInQueue(a));
  }
}

// Hot: an idle resident instance, the most recently used one (its caches are warmest).
Scheduler::PathResult Scheduler::TakeHotLocked(Acquiring& a,
                                               std::optional<StatusOr<Lease>>* lease) {
  Pool& pool = *a.pool;
  if (pool.idle_resident.empty()) return PathResult::kNone;
  std::unique_ptr<Slot> slot = std::move(pool.idle_resident.back());
  pool.idle_resident.pop_back();
  lru_.erase(slot->lru_pos);
  if (!slot->instance->Alive()) {  // died while idle (its worker was killed, say)
    --pool.total;
    resident_bytes_ -= slot->bytes;
    a.dead.push_back(std::move(slot));
    return PathResult::kLookAgain;
  }
  ++pool.busy;
  MarkBusyLocked(*slot);
  ++pool.counters.starts[static_cast<int>(StartType::kHot)];
  lease->emplace(Lease(this, std::move(slot), StartType::kHot, MicrosSince(a.start), {}));
  return PathResult::kDone;
}

// Warm: wake a parked instance (re-allocate its buffers, re-upload its constants).
Scheduler::PathResult Scheduler::WakeWarm(Acquiring& a, std::optional<StatusOr<Lease>>* lease) {
  Pool& pool = *a.pool;
  if (pool.idle_parked.empty()) return PathResult::kNone;
  std::unique_ptr<Slot> slot = std::move(pool.idle_parked.back());
  pool.idle_parked.pop_back();
  if (!slot->instance->Alive()) {
    --pool.total;
    a.dead.push_back(std::move(slot));
    return PathResult::kLookAgain;
  }
  std::vector<std::unique_ptr<Slot>> victims;
  Status reserved = ReserveLocked(slot->bytes, &victims);
  if (!reserved.ok()) {
    const size_t bytes = slot->bytes;
    pool.idle_parked.push_back(std::move(slot));
    if (RetireHostsForRoomOnce(a.lock, bytes, &a.retired_hosts)) return PathResult::kLookAgain;
    lease->emplace(std::move(reserved));
    return PathResult::kDone;
  }
  ++pool.busy;
  MarkBusyLocked(*slot);
  const double queue_us = MicrosSince(a.start);
  a.lock.unlock();
  ParkVictims(std::move(victims));
  StartTimings timings;
  Status woke = slot->instance->Wake(&timings);
  a.lock.lock();
  if (!woke.ok()) {
    UnmarkBusyLocked(*slot);
    --pool.busy;
    --pool.total;
    resident_bytes_ -= slot->bytes;
    pool.cv.notify_one();
    a.lock.unlock();
    lease->emplace(woke.WithContext("waking an instance of '" + a.key.name + "'"));
    return PathResult::kDone;
  }
  slot->resident = true;
  ++pool.counters.starts[static_cast<int>(StartType::kWarm)];
  a.lock.unlock();
  lease->emplace(Lease(this, std::move(slot), StartType::kWarm, queue_us, timings));
  return PathResult::kDone;
}

// Cold: create a new instance, if the pool has room.
Scheduler::PathResult Scheduler::StartCold(Acquiring& a, std::optional<StatusOr<Lease>>* lease) {
  Pool& pool = *a.pool;
  if (pool.total >= options_.max_instances_per_function) return PathResult::kNone;
  std::shared_ptr<LoadedVersion> version = pool.current;
  const size_t bytes = version->instance_device_bytes();
  std::vector<std::unique_ptr<Slot>> victims;
  Status reserved = ReserveLocked(bytes, &victims);
  if (!reserved.ok()) {
    if (RetireHostsForRoomOnce(a.lock, bytes, &a.retired_hosts)) return PathResult::kLookAgain;
    lease->emplace(std::move(reserved));
    return PathResult::kDone;
  }
  ++pool.total;
  ++pool.busy;
  const double queue_us = MicrosSince(a.start);
  a.lock.unlock();
  ParkVictims(std::move(victims));
  StartTimings timings;
  auto instance = executor_->CreateInstance(version, &timings);
  if (!instance.ok()) {
    a.lock.lock();
    --pool.total;
    --pool.busy;
    resident_bytes_ -= bytes;
    pool.cv.notify_one();
    a.lock.unlock();
    lease->emplace(instance.status().WithContext("starting an instance of '" + a.key.name + "'"));
    return PathResult::kDone;
  }
  auto slot = std::make_unique<Slot>();
  slot->instance = std::move(*instance);
  slot->version = std::move(version);
  slot->pool = a.pool;
  slot->bytes = bytes;
  slot->resident = true;
  a.lock.lock();
  MarkBusyLocked(*slot);
  ++pool.counters.starts[static_cast<int>(StartType::kCold)];
  a.lock.unlock();
  lease->emplace(Lease(this, std::move(slot), StartType::kCold, queue_us, timings));
  return PathResult::kDone;
}

Status Scheduler::WaitInQueue(Acquiring& a) {
  Pool& pool = *a.pool;
  if (!a.queued) {
    if (pool.waiting >= options_.max_queue_per_function) {
      return ResourceExhaustedError(
          "queue of '" + a.key.name + "' is full (" +
          std::to_string(options_.max_queue_per_function) + " waiting for " +
          std::to_string(options_.max_instances_per_function) + " instances); retry later");
    }
    a.queued = true;
  }
  ++pool.waiting;
  const bool timed_out = pool.cv.wait_until(a.lock, a.deadline) == std::cv_status::timeout;
  --pool.waiting;
  if (timed_out && pool.idle_resident.empty() && pool.idle_parked.empty() &&
      pool.total >= options_.max_instances_per_function) {
    return DeadlineExceededError("no instance of '" + a.key.name +
                                 "' became free within the invocation timeout (" +
                                 std::to_string(options_.invoke_timeout.count()) + " ms)");
  }
  return Status();
}

bool Scheduler::RetireHostsForRoomOnce(std::unique_lock<std::mutex>& lock, size_t bytes,
                                       bool* retried) {
  // Worker contexts share the budget with instances: when idle workers hold what an instance
  // needs, retire some (outside the lock: the executor calls back into DropIdleOnHost).
  if (*retried || options_.memory_budget_bytes == 0 || executor_->overhead_device_bytes() == 0) {
    return false;
  }
  *retried = true;
  lock.unlock();
  const size_t freed = executor_->RetireIdleHosts(bytes);
  lock.lock();
  return freed > 0;
}

void Scheduler::Release(std::unique_ptr<Slot> slot) {
  std::unique_ptr<Slot> doomed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Pool& pool = *slot->pool;
    --pool.busy;
    UnmarkBusyLocked(*slot);
    if (slot->instance->broken() || pool.removed || pool.unloaded ||
        slot->version != pool.current || stopping_) {
      --pool.total;
      if (slot->resident) resident_bytes_ -= slot->bytes;
      doomed = std::move(slot);
    } else {
      slot->last_used = Clock::now();
      slot->lru_pos = lru_.insert(lru_.end(), slot.get());
      pool.idle_resident.push_back(std::move(slot));
    }
    pool.cv.notify_one();
  }
  // `doomed` is destroyed here, outside the lock.
}

int Scheduler::ParkIdle(const FunctionKey& key) {
  std::vector<std::unique_ptr<Slot>> victims;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pools_.find(key);
    if (it == pools_.end()) return 0;
    Pool& pool = *it->second;
    for (auto& slot : pool.idle_resident) {
      lru_.erase(slot->lru_pos);
      resident_bytes_ -= slot->bytes;
      victims.push_back(std::move(slot));
    }
    pool.idle_resident.clear();
  }
  const int count = static_cast<int>(victims.size());
  ParkVictims(std::move(victims));
  return count;
}

PoolStats Scheduler::Stats(const FunctionKey& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pools_.find(key);
  if (it == pools_.end()) return {};
  const Pool& pool = *it->second;
  PoolStats stats = pool.counters;
  stats.resident_idle = static_cast<int>(pool.idle_resident.size());
  stats.parked = static_cast<int>(pool.idle_parked.size());
  stats.busy = pool.busy;
  stats.total = pool.total;
  stats.queued = pool.waiting;
  stats.unloaded = pool.unloaded;
  return stats;
}

std::vector<std::pair<FunctionKey, PoolStats>> Scheduler::AllStats() const {
  std::vector<FunctionKey> keys;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, pool] : pools_) keys.push_back(key);
  }
  std::vector<std::pair<FunctionKey, PoolStats>> out;
  for (const auto& key : keys) out.emplace_back(key, Stats(key));
  return out;
}

size_t Scheduler::resident_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return resident_bytes_;
}

void Scheduler::BeginShutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  shutting_down_ = true;
}

void Scheduler::ReaperLoop() {
  // Checks a few times per TTL, at least every second, at most every 10 ms.
  const auto period = std::clamp(options_.parked_ttl / 4, std::chrono::milliseconds(10),
                                 std::chrono::milliseconds(1000));
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    reaper_cv_.wait_for(lock, period);
    if (stopping_) break;
    std::vector<std::unique_ptr<Slot>> expired;
    const auto now = Clock::now();
    for (auto& [key, pool] : pools_) {
      auto& parked = pool->idle_parked;
      for (auto it = parked.begin(); it != parked.end();) {
        if (now - (*it)->last_used >= options_.parked_ttl) {
          expired.push_back(std::move(*it));
          it = parked.erase(it);
          --pool->total;
          ++pool->counters.expired;
          pool->cv.notify_one();
        } else {
          ++it;
        }
      }
    }
    if (!expired.empty()) {
      lock.unlock();
      expired.clear();  // destroy outside the lock
      lock.lock();
    }
  }
}

}  // namespace kchain::gateway
