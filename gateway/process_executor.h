// The process executor (--isolation=process): every instance lives in its own kchain-worker
// process, with its own device context, bound for life to one function of one tenant.
//
// A pool of pre-initialized workers (device context already created, no tenant yet) waits
// ready; a cold start takes one, loads the library and constants into it, and runs. The pool
// refills in the background. Untrusted libraries are never opened in the gateway: deploy
// validation also runs in a worker, which is then discarded.
//
// Containment: a worker that crashes, faults the device, exceeds its memory limit, or runs
// past the invocation timeout (then it is killed) fails only the invocation in it; its
// instance is replaced by a fresh worker at the next invocation.
#ifndef KCHAIN_GATEWAY_PROCESS_EXECUTOR_H_
#define KCHAIN_GATEWAY_PROCESS_EXECUTOR_H_

#include <chrono>
#include <memory>

#include "gateway/executor.h"
#include "gateway/worker_process.h"

namespace kchain::gateway {

struct ProcessExecutorOptions {
  WorkerLaunch launch;
  int prestarted_workers = 2;  // idle, pre-initialized workers kept ready
  int max_workers = 256;       // all workers, bound or idle
  // Host memory a worker may use above what it held once ready (its device context and
  // runtime); past it, the worker is killed. 0: no limit.
  uint64_t memory_limit_bytes = uint64_t{2} << 30;
  std::chrono::milliseconds run_timeout{30000};
  // How long the invoking thread spins on the worker's control page before it sleeps on the
  // socket: a short run's reply is then seen without a wake-up. 0: never spin.
  std::chrono::microseconds reply_spin{200};
  // How long a worker spins on its control page for the next run after finishing one, so
  // that back-to-back invocations need no wake-up. Costs a core while it spins. 0: never.
  std::chrono::microseconds request_spin{0};
  uint32_t stage_timing_period = 64;
};

// Starts the pool and waits for the first worker, which tells the device. kUnavailable when
// no worker can start (the message says why).
StatusOr<std::unique_ptr<Executor>> MakeProcessExecutor(ProcessExecutorOptions options);

}  // namespace kchain::gateway

#endif  // KCHAIN_GATEWAY_PROCESS_EXECUTOR_H_
