// Executor: where a function's instances run (design: "Seams for growth").
//
// The scheduler and the HTTP layer see instances only through these interfaces. The
// in-process executor runs them in the gateway's own process on a kchain::Device; the worker
// executor (isolation) runs them in sandboxed worker processes.
//
// Thread-safety: Executor methods are safe from any thread. An ExecInstance is used by one
// thread at a time (the scheduler hands it out under a lease).
#ifndef KCHAIN_GATEWAY_EXEC_EXECUTOR_H_
#define KCHAIN_GATEWAY_EXEC_EXECUTOR_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "gateway/exec/stored_version.h"
#include "kchain/function.h"
#include "kchain/manifest.h"
#include "kchain/status.h"

namespace kchain::gateway {

// One function version, loaded and validated where its instances will run.
class LoadedVersion {
 public:
  LoadedVersion(FunctionKey key, uint64_t version, kchain::Manifest manifest)
      : key_(std::move(key)), version_(version), manifest_(std::move(manifest)) {}
  virtual ~LoadedVersion() = default;

  const FunctionKey& key() const { return key_; }
  uint64_t version() const { return version_; }
  const kchain::Manifest& manifest() const { return manifest_; }
  const kchain::FunctionSpec& spec() const { return manifest_.spec; }
  // Device memory one instance holds while resident.
  size_t instance_device_bytes() const {
    return spec().max_input_bytes + spec().tmp_bytes + spec().out_bytes + spec().constant_bytes;
  }
  // PyPlover's "load kernel" (dlopen and checks) and the constants' read and staging.
  double library_load_us = 0;
  double constants_load_us = 0;

 private:
  FunctionKey key_;
  uint64_t version_;
  kchain::Manifest manifest_;
};

// Costs of bringing an instance up, for the cold and warm start breakdown.
struct StartTimings {
  double acquire_us = 0;    // getting a place to run (a worker), 0 in-process
  double library_us = 0;    // loading the library there, 0 when already loaded
  double create_us = 0;     // buffers, stream, staging: everything but the constants
  double constants_us = 0;  // uploading the constants
};

class ExecInstance {
 public:
  virtual ~ExecInstance() = default;
  // Where the caller writes the input before Run(): at least spec.max_input_bytes.
  virtual std::span<std::byte> input_buffer() = 0;
  // Where the output is after a successful Run(): spec.out_bytes.
  virtual std::span<const std::byte> output_buffer() const = 0;
  // Runs the chain on the first `input_bytes` of input_buffer(). Errors as
  // kchain::Instance::RunStaged (kKernelError, kUnavailable, ...), plus kDeadlineExceeded
  // where the executor can stop a run that takes too long.
  virtual Status Run(size_t input_bytes, kchain::RunTimings* timings) = 0;
  virtual Status Park() = 0;
  virtual Status Wake(StartTimings* timings) = 0;
  // True once the instance can never run again (device fault, worker gone).
  virtual bool broken() const = 0;
  // A cheap check before an idle instance is handed out: false when it died while idle (its
  // worker was killed, say), so that the invocation gets a fresh one instead of an error.
  virtual bool Alive() { return !broken(); }
  virtual kchain::ExecMode exec_mode() const = 0;
  // The process the instance runs in (a worker's id), so that the scheduler can tell which
  // instances a retired worker takes with it; 0 for instances in the gateway's own process.
  virtual uint64_t host() const { return 0; }
};

// Why a stored version is loaded.
enum class LoadPurpose {
  kDeploy,   // a new upload: load it for real and validate everything (its code runs)
  kRestore,  // a stored function at start-up, validated when it was deployed: check it without
             // running its code where that is cheaper; it is loaded at its first cold start
};

// What the executor reports about itself for /readyz and /metrics.
// One worker process, for admins (/v1/workers) and the metrics.
struct WorkerInfo {
  uint64_t id = 0;
  int64_t pid = 0;
  std::string tenant;     // whose instances it hosts
  std::string scope_key;  // what it is bound to: the tenant, tenant/function or an instance
  int instances = 0;
  int functions = 0;  // function versions loaded
  double idle_s = 0;  // since it last ran anything
};

struct ExecutorStats {
  std::string isolation;     // "none" or "process"
  std::string worker_scope;  // "tenant", "function" or "instance" (process isolation)
  int workers_live = 0;      // worker processes alive (idle pool included)
  int workers_idle = 0;      // pre-initialized workers waiting for a first instance
  int workers_bound = 0;     // workers hosting a tenant's instances
  int workers_limit = 0;     // most workers now: --max-workers, the budget, what the device took
  std::vector<std::pair<std::string, uint64_t>> restarts;   // worker deaths by reason
  std::vector<std::pair<std::string, uint64_t>> evictions;  // workers retired, by reason
  std::string last_restart;                                 // the latest, described
  std::string sandbox;                                      // measures in force, and notes
  size_t context_bytes = 0;      // device memory one worker's context takes (measured at start)
  int workers_spawning = 0;      // being started now
  int workers_ending = 0;        // retired, their contexts not yet torn down
  uint64_t spawn_failures = 0;   // starts that failed (the device refused a context, ...)
  std::string last_spawn_error;  // why the latest start failed ("" when it succeeded)
  // Worker lifecycle: starts (process, device context, READY) and ends (kill until reaped).
  uint64_t worker_starts = 0;
  double worker_start_seconds = 0;  // summed
  uint64_t worker_ends = 0;
  double worker_end_seconds = 0;    // summed
  std::vector<WorkerInfo> workers;  // bound workers
};

class Executor {
 public:
  virtual ~Executor() = default;
  virtual kchain::DeviceKind device_kind() const = 0;
  virtual std::string device_name() const = 0;
  // Loads `version` (library, spec, constants) and validates it. kInvalidArgument for
  // anything wrong with what the author uploaded (bad library, missing kernel, wrong target,
  // constants of the wrong size, spec beyond the device's limits).
  virtual StatusOr<std::shared_ptr<LoadedVersion>> Load(const StoredVersion& version,
                                                        const kchain::Manifest& manifest,
                                                        LoadPurpose purpose) = 0;
  // A new resident instance of `version` (which this executor loaded).
  virtual StatusOr<std::unique_ptr<ExecInstance>> CreateInstance(
      const std::shared_ptr<LoadedVersion>& version, StartTimings* timings) = 0;
  // Whether new work can run; `why` says why not.
  virtual bool Ready(std::string* why) const = 0;
  // Device memory held by instances now, as the device counts it.
  virtual size_t device_memory_in_use() const = 0;
  // The device's memory in all.
  virtual size_t device_memory_total() const = 0;
  virtual ExecutorStats Stats() const = 0;

  // Device memory the executor's own processes hold beyond their instances (the device
  // contexts of worker processes); the scheduler's memory budget counts it.
  virtual size_t overhead_device_bytes() const { return 0; }
  // The scheduler's side of retiring a process: drops every idle instance on `host` and
  // returns true, or returns false (dropping nothing) when one of them is busy.
  using HostReleaser = std::function<bool(uint64_t host)>;
  virtual void SetHostReleaser(HostReleaser releaser) {}
  // Retires idle processes, least recently used first, until `bytes` of the overhead are
  // freed or none is left to retire; returns the bytes freed. Must be called without the
  // scheduler's lock held (it calls the releaser).
  virtual size_t RetireIdleHosts(size_t bytes) { return 0; }
};

// Runs instances inside this process on `device`.
std::unique_ptr<Executor> MakeInProcessExecutor(std::shared_ptr<kchain::Device> device,
                                                kchain::InstanceOptions options);

}  // namespace kchain::gateway

#endif  // KCHAIN_GATEWAY_EXEC_EXECUTOR_H_
