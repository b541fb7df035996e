// WorkerProcess: one kchain-worker process as the gateway sees it: spawned, spoken to over
// its channel, watched, killed and reaped.
//
// Thread-safety: one thread at a time per object.
#ifndef KCHAIN_GATEWAY_EXEC_WORKER_PROCESS_H_
#define KCHAIN_GATEWAY_EXEC_WORKER_PROCESS_H_

#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>

#include "gateway/worker/protocol.h"
#include "kchain/status.h"

namespace kchain::gateway {

struct WorkerLaunch {
  std::string binary;  // the kchain-worker executable
  std::string device = "auto";
  int ordinal = 0;
  std::string gpu_wait = "auto";  // how the worker's threads wait for the GPU (ParseGpuWait)
  int device_connections = 0;     // CUDA_DEVICE_MAX_CONNECTIONS in the worker; 0: CUDA's own
  std::string workdir_root;       // each worker gets a private folder below it
  bool sandbox = true;
  uint64_t max_open_files = 256;
  uint64_t cpu_seconds = 0;             // RLIMIT_CPU for the worker's life; 0: none
  uint64_t address_space_headroom = 0;  // host workers only; 0: no RLIMIT_AS
  // The user the worker switches to once its device is open; -1: stay. By default, nobody
  // (65534) when the gateway runs as root.
  int64_t uid = ::geteuid() == 0 ? 65534 : -1;
  int64_t gid = ::geteuid() == 0 ? 65534 : -1;
  int ready_timeout_ms = 120000;
};

// Why a worker ended, for errors, metrics and /readyz.
struct WorkerDeath {
  std::string reason;       // segfault, abort, bus_error, fpe, illegal_instruction, cpu_limit,
                            // killed, exited, signal
  std::string description;  // e.g. "crashed with SIGSEGV (segmentation fault)"
};

class WorkerProcess {
 public:
  // Starts a worker and waits for its READY. kUnavailable when it cannot start or does not
  // become ready (the message says why, with the worker's own words when it sent any).
  static StatusOr<std::unique_ptr<WorkerProcess>> Spawn(const WorkerLaunch& launch);

  // Kills the worker if it still runs, reaps it, and removes its working folder.
  ~WorkerProcess();
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  worker::Channel& channel() { return *channel_; }
  pid_t pid() const { return pid_; }
  const worker::ReadyBody& ready() const { return ready_; }
  double spawn_us() const { return spawn_us_; }

  // Resident memory now, from /proc/<pid>/statm (0 if unreadable).
  uint64_t ResidentBytes() const;
  // CPU time used so far (user and system, all threads), from /proc/<pid>/stat.
  double CpuSeconds() const;
  // False once the worker has hung up or died (a cheap, non-blocking check).
  bool Alive() const;
  // Asks the worker to exit; kills it if it has not within `grace_ms`.
  void Stop(int grace_ms);
  // SIGKILL.
  void Kill();
  // Waits for the worker (which must be dead or dying) and says why it ended. Idempotent.
  WorkerDeath Reap();

 private:
  WorkerProcess() = default;

  pid_t pid_ = -1;
  bool reaped_ = false;
  WorkerDeath death_;
  std::unique_ptr<worker::Channel> channel_;
  worker::ReadyBody ready_{};
  std::string workdir_;
  double spawn_us_ = 0;
};

}  // namespace kchain::gateway

#endif  // KCHAIN_GATEWAY_EXEC_WORKER_PROCESS_H_
