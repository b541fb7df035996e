// The process executor (--isolation=process): instances live in sandboxed kchain-worker
// processes, each with its own device context. A worker hosts the instances of one scope:
//  - tenant (the default): every function and instance of one tenant on this device shares
//    one context, so the GPU runs their kernels side by side instead of time-slicing between
//    contexts, and a tenant's thousand functions cost one context, not a thousand;
//  - function: one worker per function of a tenant;
//  - instance: one worker per instance, the narrowest fault domain (the old behaviour).
// Workers never host two tenants.
//
// A pool of pre-initialized workers (device context already created, no tenant yet) waits
// ready; the first cold start of a scope binds one, later ones load into it (library and
// constants only, no new context). When a new worker is needed and --max-workers is reached,
// or a context cannot be created for lack of device memory, the least recently used worker
// whose instances are all idle is retired (its instances are dropped; their next starts are
// cold), and the new one starts. Bound workers left with no instance are retired after the
// idle TTL. Context memory is measured at start and counted against the memory budget.
//
// Containment: a worker that crashes, faults the device, exceeds its memory limit, or runs
// past the invocation timeout (then it is killed) fails the invocations in flight in it, and
// only those: other scopes' workers are untouched. Its instances are replaced by fresh ones
// at their next invocations. Untrusted libraries are never opened in the gateway.
#ifndef KCHAIN_GATEWAY_EXEC_PROCESS_EXECUTOR_H_
#define KCHAIN_GATEWAY_EXEC_PROCESS_EXECUTOR_H_

#include <chrono>
#include <memory>
#include <string_view>

#include "gateway/exec/executor.h"
#include "gateway/exec/worker_process.h"

namespace kchain::gateway {

enum class WorkerScope { kTenant, kFunction, kInstance };
std::string_view WorkerScopeName(WorkerScope scope);  // "tenant", "function", "instance"
StatusOr<WorkerScope> ParseWorkerScope(std::string_view name);

struct ProcessExecutorOptions {
  WorkerLaunch launch;
  WorkerScope scope = WorkerScope::kTenant;
  int workers_per_scope = 1;   // workers one scope may spread its instances over
  int prestarted_workers = 2;  // idle, pre-initialized workers kept ready
  int max_workers = 256;       // all workers, bound or idle
  // Host memory a worker may use beyond what it held once ready plus what its functions and
  // instances declare (libraries, constants, shared input and output); past it, the worker is
  // killed. 0: no limit.
  uint64_t memory_limit_bytes = uint64_t{2} << 30;
  std::chrono::milliseconds run_timeout{30000};
  // How long the invoking thread spins on the control page before it sleeps on the futex:
  // a short run's reply is then seen without a wake-up. 0: never spin.
  std::chrono::microseconds reply_spin{200};
  // How many invoking threads may spin at once; the others sleep on the futex at once, so
  // that under load the spinners do not take the cores the workers' threads need. 0: no cap.
  int reply_spinners = 1;
  // How long an instance's thread spins on its control page for the next request after
  // finishing one. Costs a core while it spins. 0: never.
  std::chrono::microseconds request_spin{0};
  // How both spins wait: false, the processor's pause hint; true, sched_yield(), which hands
  // the core to other runnable threads first (an oversubscribed host's HTTP and worker
  // threads) and costs a system call per turn when there are none.
  bool spin_yield = false;
  uint32_t stage_timing_period = 64;
  // A bound worker with no instance left is retired after this.
  std::chrono::milliseconds idle_worker_ttl{600000};
  // A worker that has used this much CPU time (its threads' user and system time) is retired
  // the next time all its instances are idle, and a fresh one takes its place: a budget that
  // a busy shared worker may reach in hours, and a library's stray background thread cannot
  // spend forever. 0: no limit.
  uint64_t cpu_seconds_budget = 3600;
  // Device memory the workers' contexts may take together (the scheduler's budget, which
  // they share with instances); 0: 90% of the device's memory, the scheduler's default.
  size_t device_budget_bytes = 0;
};

// Starts the pool and waits for the first worker (which tells the device) and, when more
// than one worker is allowed, a second (the difference in free device memory is one
// context's cost). kUnavailable when no worker can start (the message says why).
StatusOr<std::unique_ptr<Executor>> MakeProcessExecutor(ProcessExecutorOptions options);

}  // namespace kchain::gateway

#endif  // KCHAIN_GATEWAY_EXEC_PROCESS_EXECUTOR_H_
