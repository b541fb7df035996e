// Service: the gateway's core, with no HTTP in it. Owns the function store, the executor and
// the scheduler; deploys, lists, describes and deletes functions and hands out instances.
//
// Thread-safety: every method is safe from any thread. Deploys and deletes of one function
// are serialized (a second concurrent one gets kAlreadyExists: "in progress").
#ifndef KCHAIN_GATEWAY_CORE_SERVICE_H_
#define KCHAIN_GATEWAY_CORE_SERVICE_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <vector>

#include "gateway/core/function_store.h"
#include "gateway/core/metrics.h"
#include "gateway/core/scheduler.h"
#include "gateway/exec/executor.h"
#include "kchain/manifest.h"

namespace kchain::gateway {

struct ServiceOptions {
  std::string data_dir = "kchain-data";
  SchedulerOptions scheduler;
};

// What describe and list report about a function.
struct FunctionInfo {
  FunctionKey key;
  uint64_t version = 0;
  std::vector<VersionRecord> history;
  kchain::Manifest manifest;
  size_t instance_device_bytes = 0;
  double library_load_us = 0;
  double constants_load_us = 0;
  PoolStats pool;
  // Set when the stored function could not be loaded (at start-up); it is then listed but
  // not invocable.
  std::string load_error;
};

class Service {
 public:
  // Opens the store under options.data_dir and loads every stored function through
  // `executor`. Functions that fail to load are kept, listed with their error, and answer
  // invocations with kUnavailable. `log` receives one line per notable event.
  static StatusOr<std::unique_ptr<Service>> Create(ServiceOptions options,
                                                   std::unique_ptr<Executor> executor,
                                                   std::function<void(const std::string&)> log);
  ~Service();

  struct DeployResult {
    FunctionInfo info;
    bool created = false;  // a new function rather than a new version of one
  };
  // Stores, loads and validates a new version of `key`, then makes it current. The previous
  // version keeps serving until then; on failure nothing is left behind. Errors:
  // kInvalidArgument (bad name, manifest, library, kernel, target, constants),
  // kAlreadyExists (a deploy or delete of the same function is in progress),
  // kInsufficientStorage (disk full), kResourceExhausted (an instance would not fit the memory
  // budget).
  StatusOr<DeployResult> Deploy(const FunctionKey& key, std::string_view manifest_json,
                                std::span<const std::byte> library,
                                std::span<const std::byte> constants);

  // Functions of `tenant` (all tenants when nullopt), sorted by tenant then name.
  std::vector<FunctionInfo> List(const std::optional<std::string>& tenant) const;
  StatusOr<FunctionInfo> Describe(const FunctionKey& key) const;
  Status Delete(const FunctionKey& key);

  // An instance for one invocation. Errors as Scheduler::Acquire, plus kUnavailable for a
  // function that failed to load.
  StatusOr<Scheduler::Lease> Acquire(const FunctionKey& key);
  // The current version of `key`, or null: a cheap look-up for checks before Acquire().
  std::shared_ptr<const LoadedVersion> Current(const FunctionKey& key) const;
  // The data directory, absolute (error messages are cleaned of it).
  const std::string& data_dir() const { return store_->data_dir(); }

  // Parks the idle instances of `key`. kNotFound for an unknown function.
  StatusOr<int> Park(const FunctionKey& key);

  // The v2 protocol's model repository. Unload takes `key` out of service: its invocations
  // get kUnavailable and its instances (and their workers) are destroyed; the deployed files,
  // versions and counters stay, and a restart or a new deploy loads it again. Load puts it
  // back in service and, when no instance of it is resident, brings one up (a cold or warm
  // start, counted as such) so that the next invocation is hot. kNotFound for an unknown
  // function. Unload of a function that failed to load is a no-op; Load of one gives
  // kUnavailable (deploy it again). Load returns what bringing the instance up returned
  // (e.g. kResourceExhausted); the function is in service even then.
  Status Unload(const FunctionKey& key);
  Status Load(const FunctionKey& key);

  // Blobs uploaded ahead of a deploy, per tenant.
  StatusOr<std::string> PutUpload(const std::string& tenant, std::span<const std::byte> bytes);
  StatusOr<std::string> ReadUpload(const std::string& tenant, const std::string& id) const;

  // Ready to serve: not shutting down and the device is healthy. `why` says why not.
  bool Ready(std::string* why) const;
  // Stops accepting invocations (kUnavailable); in-flight ones complete.
  void BeginShutdown();

  // The request metrics of `key`, or null for an unknown function.
  std::shared_ptr<FunctionMetrics> MetricsFor(const FunctionKey& key) const;

  Executor& executor() { return *executor_; }
  const Executor& executor() const { return *executor_; }
  Scheduler& scheduler() { return *scheduler_; }
  const Scheduler& scheduler() const { return *scheduler_; }
  Metrics& metrics() { return metrics_; }
  const Metrics& metrics() const { return metrics_; }
  const ServiceOptions& options() const { return options_; }

 private:
  struct Entry {
    StoredFunction stored;
    std::shared_ptr<LoadedVersion> loaded;  // null when load_error is set
    std::string load_error;
    bool busy = false;  // a deploy or delete is in progress
    std::shared_ptr<FunctionMetrics> metrics;
  };

  Service(ServiceOptions options, std::unique_ptr<Executor> executor,
          std::unique_ptr<FunctionStore> store, std::function<void(const std::string&)> log);
  FunctionInfo InfoLocked(const Entry& entry) const;
  void LoadStoredFunctions();

  ServiceOptions options_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<FunctionStore> store_;
  std::function<void(const std::string&)> log_;
  Metrics metrics_;
  std::unique_ptr<Scheduler> scheduler_;

  mutable std::shared_mutex mu_;
  std::map<FunctionKey, Entry> entries_;
  std::atomic<bool> shutting_down_{false};
};

}  // namespace kchain::gateway

#endif  // KCHAIN_GATEWAY_CORE_SERVICE_H_
