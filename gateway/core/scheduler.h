// Scheduler: hands out instances of functions for invocations.
//
// Per function: a pool of at most max_instances instances; an invocation takes an idle
// resident one (hot start), else wakes a parked one (warm), else creates one (cold), else
// waits in a bounded queue (kResourceExhausted when it is full) until one is released or the
// invocation timeout passes (kDeadlineExceeded). Concurrent invocations of one function run
// on distinct instances, each with its own stream.
//
// Across functions: resident instances must fit a device memory budget. When waking or
// creating an instance would exceed it, idle resident instances are parked (device memory
// released, constants kept in pinned host memory) least recently used first. Parked instances
// idle longer than the parked TTL are destroyed, so the next invocation is cold.
//
// Thread-safety: every method is safe from any thread. Expensive work (creating, waking,
// parking, destroying instances) happens outside the scheduler's lock.
#ifndef KCHAIN_GATEWAY_CORE_SCHEDULER_H_
#define KCHAIN_GATEWAY_CORE_SCHEDULER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "gateway/exec/executor.h"

namespace kchain::gateway {

struct FunctionMetrics;  // gateway/core/metrics.h

enum class StartType { kCold, kWarm, kHot };
std::string_view StartTypeName(StartType type);  // "cold", "warm", "hot"

struct SchedulerOptions {
  int max_instances_per_function = 4;
  int max_queue_per_function = 64;
  std::chrono::milliseconds invoke_timeout{30000};
  size_t memory_budget_bytes = 0;  // 0: no budget
  std::chrono::milliseconds parked_ttl{600000};
};

// A snapshot of one function's pool.
struct PoolStats {
  int resident_idle = 0;
  int parked = 0;
  int busy = 0;
  int total = 0;                   // all instances, including ones being created
  int queued = 0;                  // invocations waiting for an instance
  uint64_t starts[3] = {0, 0, 0};  // by StartType
  uint64_t parks = 0;              // instances parked to make room or on request
  uint64_t expired = 0;            // parked instances destroyed after the TTL
  uint64_t retired = 0;            // idle instances dropped because their worker was retired
  bool unloaded = false;           // Unload()ed: invocations get kUnavailable
};

class Scheduler {
  struct Pool;
  struct Slot;

 public:
  // Exclusive use of one instance for one invocation; returns it to the pool when destroyed.
  class Lease {
   public:
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&&) = delete;
    ~Lease();

    ExecInstance& instance();
    const LoadedVersion& version() const;
    StartType start() const { return start_; }
    double queue_us() const { return queue_us_; }
    // Cold and warm starts: what bringing the instance up cost.
    const StartTimings& start_timings() const { return start_timings_; }
    // The function's metrics, as given to Activate().
    FunctionMetrics* metrics() const;

   private:
    friend class Scheduler;
    Lease(Scheduler* scheduler, std::unique_ptr<Slot> slot, StartType start, double queue_us,
          StartTimings start_timings);
    Scheduler* scheduler_;
    std::unique_ptr<Slot> slot_;
    StartType start_;
    double queue_us_;
    StartTimings start_timings_;
  };

  Scheduler(Executor* executor, SchedulerOptions options);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Makes `version` the version that new invocations of its function get. Idle instances of
  // an older version are destroyed now, busy ones when released. `metrics` (the service's
  // counters for the function) is handed back by Lease::metrics(); the pool keeps it alive
  // while any lease of the function is out.
  void Activate(std::shared_ptr<LoadedVersion> version, std::shared_ptr<FunctionMetrics> metrics);
  // Forgets the function: waiting invocations get kNotFound, instances are destroyed as soon
  // as they are idle.
  void Remove(const FunctionKey& key);

  // Takes `key` out of service without forgetting it (the v2 protocol's model unload): from
  // now on Acquire() fails with kUnavailable, and so do the invocations waiting in its queue;
  // idle resident and parked instances are destroyed now, busy ones when released. Counters
  // are kept. False for an unknown function.
  bool Unload(const FunctionKey& key);
  // Puts an unloaded function back in service; Activate() (a new version) does too. False for
  // an unknown function.
  bool Reload(const FunctionKey& key);

  // Errors: kNotFound (unknown function), kUnavailable (unloaded), kResourceExhausted (queue full,
  // or the memory budget is held by busy instances), kDeadlineExceeded (waited past the invocation
  // timeout), kUnavailable (shutting down), and whatever creating or waking an instance returned.
  StatusOr<Lease> Acquire(const FunctionKey& key);

  // Parks every idle resident instance of `key`; returns how many.
  int ParkIdle(const FunctionKey& key);

  // Drops every idle instance (resident or parked) that runs on `host` (ExecInstance::host())
  // and returns true, or returns false and drops nothing when one on it is busy. The executor
  // calls this before it retires a worker process.
  bool DropIdleOnHost(uint64_t host);

  PoolStats Stats(const FunctionKey& key) const;
  std::vector<std::pair<FunctionKey, PoolStats>> AllStats() const;
  // Device bytes held by resident instances (and reserved for ones being brought up).
  size_t resident_bytes() const;
  const SchedulerOptions& options() const { return options_; }

  // New Acquire() calls fail with kUnavailable from now on; leases already out, and
  // invocations already queued, complete.
  void BeginShutdown();

 private:
  void Release(std::unique_ptr<Slot> slot);
  // Picks idle resident instances to park so that `bytes` more fit the budget (which the
  // executor's own overhead, worker contexts, shares), and reserves the bytes. Called with mu_
  // held. kResourceExhausted when busy instances hold too much.
  Status ReserveLocked(size_t bytes, std::vector<std::unique_ptr<Slot>>* victims);
  // Hands out `slot` for a lease (counts it busy on its host), and takes it back. Called with
  // mu_ held.
  void MarkBusyLocked(const Slot& slot);
  void UnmarkBusyLocked(const Slot& slot);
  // When the budget refused `bytes` and idle worker processes hold part of it, retires some of
  // them (once per acquire: `*retried`), releasing and retaking `lock`. True when any room was
  // made (the caller then looks again from the start, since the lock was released).
  bool RetireHostsForRoomOnce(std::unique_lock<std::mutex>& lock, size_t bytes, bool* retried);
  // Parks `victims` (outside the lock) and files them as parked.
  void ParkVictims(std::vector<std::unique_ptr<Slot>> victims);
  // Takes every idle slot of `pool` out (to destroy them). Called with mu_ held.
  void TakeIdleLocked(Pool& pool, std::vector<std::unique_ptr<Slot>>* out);
  void ReaperLoop();

  // Acquire's paths, tried in order. Each leaves `*lease` set and says kDone, says kNone when
  // it has nothing to offer (the next path is tried), or kLookAgain when it found a dead
  // instance or made room (Acquire starts over). The warm and cold paths release the lock
  // while an instance wakes or starts and return with it released when they are done.
  enum class PathResult { kNone, kLookAgain, kDone };
  struct Acquiring;
  PathResult TakeHotLocked(Acquiring& a, std::optional<StatusOr<Lease>>* lease);
  PathResult WakeWarm(Acquiring& a, std::optional<StatusOr<Lease>>* lease);
  PathResult StartCold(Acquiring& a, std::optional<StatusOr<Lease>>* lease);
  // Waits in the function's queue until an instance may be free; an error when the queue is
  // full or the invocation timeout passed with none free.
  Status WaitInQueue(Acquiring& a);

  Executor* executor_;
  const SchedulerOptions options_;

  mutable std::mutex mu_;
  std::map<FunctionKey, std::shared_ptr<Pool>> pools_;
  std::list<Slot*> lru_;  // idle resident slots of all functions, least recently used first
  std::map<uint64_t, int> busy_by_host_;  // leases out, by the host their instance runs on
  size_t resident_bytes_ = 0;
  bool shutting_down_ = false;
  bool stopping_ = false;
  std::condition_variable reaper_cv_;
  std::thread reaper_;
};

}  // namespace kchain::gateway

#endif  // KCHAIN_GATEWAY_CORE_SCHEDULER_H_
