#include "gateway/core/service.h"

#include <algorithm>
#include <mutex>

namespace kchain::gateway {
namespace {

// Failures to load what an author uploaded are the author's input errors (400), whatever
// the loader called them (a missing kernel is kNotFound there, but not a 404 here).
Status AsDeployError(const Status& status) {
  switch (status.code()) {
    case StatusCode::kResourceExhausted:
    case StatusCode::kInsufficientStorage:
    case StatusCode::kUnavailable:
    case StatusCode::kInternal:
    case StatusCode::kPayloadTooLarge:
      return status;
    default:
      return InvalidArgumentError(status.message());
  }
}

}  // namespace

Service::Service(ServiceOptions options, std::unique_ptr<Executor> executor,
                 std::unique_ptr<FunctionStore> store, std::function<void(const std::string&)> log)
    : options_(std::move(options)),
      executor_(std::move(executor)),
      store_(std::move(store)),
      log_(std::move(log)),
      scheduler_(std::make_unique<Scheduler>(executor_.get(), options_.scheduler)) {}

Service::~Service() {
  // Instances go before the executor that made them.
  scheduler_.reset();
}

StatusOr<std::unique_ptr<Service>> Service::Create(ServiceOptions options,
                                                   std::unique_ptr<Executor> executor,
                                                   std::function<void(const std::string&)> log) {
  KCHAIN_ASSIGN_OR_RETURN(auto store, FunctionStore::Open(options.data_dir));
  if (!log) log = [](const std::string&) {};
  if (!store->start_warning().empty()) log("warning: " + store->start_warning());
  std::unique_ptr<Service> service(
      new Service(std::move(options), std::move(executor), std::move(store), std::move(log)));
  service->LoadStoredFunctions();
  return service;
}

void Service::LoadStoredFunctions() {
  std::vector<std::string> problems;
  auto stored = store_->Load(&problems);
  for (const auto& problem : problems) log_("warning: stored function skipped: " + problem);
  for (auto& [function, version] : stored) {
    Entry entry;
    entry.stored = function;
    entry.metrics = std::make_shared<FunctionMetrics>();
    auto manifest_text = kchain::ReadFileToString(version.manifest_path);
    auto manifest = manifest_text.ok() ? kchain::ParseManifest(*manifest_text)
                                       : StatusOr<kchain::Manifest>(manifest_text.status());
    Status status = manifest.status();
    if (manifest.ok()) {
      auto loaded = executor_->Load(version, *manifest, LoadPurpose::kRestore);
      status = loaded.status();
      if (loaded.ok()) {
        entry.loaded = *loaded;
        scheduler_->Activate(entry.loaded, entry.metrics);
      }
    }
    if (!status.ok()) {
      entry.load_error = status.ToString();
      log_("error: function " + function.key.str() + " version " +
           std::to_string(function.current) + " failed to load: " + entry.load_error);
    } else {
      log_("loaded function " + function.key.str() + " version " +
           std::to_string(function.current));
    }
    entries_.emplace(function.key, std::move(entry));
  }
}

StatusOr<Service::DeployResult> Service::Deploy(const FunctionKey& key,
                                                std::string_view manifest_json,
                                                std::span<const std::byte> library,
                                                std::span<const std::byte> constants) {
  KCHAIN_RETURN_IF_ERROR(ValidateName(key.tenant, "tenant"));
  KCHAIN_RETURN_IF_ERROR(ValidateName(key.name, "function"));
  KCHAIN_ASSIGN_OR_RETURN(kchain::Manifest manifest, kchain::ParseManifest(manifest_json));
  // The manifest's name is the tools' default; the name in the URL is the one deployed.
  manifest.name = key.name;
  // Paths to files are for tools on the author's machine; the server stores the bytes.
  manifest.libraries.clear();
  manifest.constants.clear();
  if (library.empty()) return InvalidArgumentError("the kernel library is empty");
  if (constants.size() != manifest.spec.constant_bytes) {
    return InvalidArgumentError(
        "constants are " + std::to_string(constants.size()) +
        " bytes but the manifest declares constant_bytes = " +
        std::to_string(manifest.spec.constant_bytes) +
        (constants.size() > manifest.spec.constant_bytes ? " (larger than declared)"
         : constants.empty() ? " (none were sent: send the manifest's constants "
                               "file with the deploy, e.g. kchain deploy "
                               "--constants FILE)"
                             : " (smaller than declared)"));
  }
  const size_t budget = options_.scheduler.memory_budget_bytes;
  const size_t instance_bytes = manifest.spec.max_input_bytes + manifest.spec.tmp_bytes +
                                manifest.spec.out_bytes + manifest.spec.constant_bytes;
  if (budget != 0 && instance_bytes > budget) {
    // Permanent for this server: not a "retry later" 429.
    return InvalidArgumentError("an instance of this function needs " +
                                std::to_string(instance_bytes) +
                                " bytes of device memory, more than the server's budget (" +
                                std::to_string(budget) + " bytes)");
  }

  // Claim the function for this deploy, and pick the version number.
  StoredFunction stored;
  bool created = false;
  {
    std::unique_lock lock(mu_);
    auto [it, inserted] = entries_.try_emplace(key);
    Entry& entry = it->second;
    if (!inserted && entry.busy) {
      return AlreadyExistsError("a deploy or delete of '" + key.name +
                                "' is in progress; retry when it is done");
    }
    created = inserted;
    if (inserted) {
      entry.stored.key = key;
      entry.metrics = std::make_shared<FunctionMetrics>();
    }
    entry.busy = true;
    stored = entry.stored;
  }
  auto release_claim = [&] {
    std::unique_lock lock(mu_);
    if (created) {
      entries_.erase(key);
    } else {
      entries_.at(key).busy = false;
    }
  };

  const uint64_t version = stored.history.empty() ? 1 : stored.history.back().version + 1;
  const std::string canonical = kchain::ManifestToJson(manifest);
  auto staged = store_->Stage(key, version, canonical, library, constants);
  if (!staged.ok()) {
    release_claim();
    return staged.status();
  }
  auto loaded = executor_->Load(*staged, manifest, LoadPurpose::kDeploy);
  if (!loaded.ok()) {
    store_->RemoveVersion(key, version);
    release_claim();
    return AsDeployError(loaded.status()).WithContext("deploy of '" + key.name + "' rejected");
  }
  const uint64_t previous = stored.current;
  stored.key = key;
  stored.current = version;
  stored.history.push_back(staged->record);
  if (Status committed = store_->Commit(stored); !committed.ok()) {
    store_->RemoveVersion(key, version);
    release_claim();
    return committed;
  }

  std::shared_ptr<FunctionMetrics> metrics;
  {
    std::unique_lock lock(mu_);
    Entry& entry = entries_.at(key);
    entry.stored = stored;
    entry.loaded = *loaded;
    entry.load_error.clear();
    entry.busy = false;
    metrics = entry.metrics;
  }
  scheduler_->Activate(*loaded, metrics);
  if (previous != 0) store_->RemoveVersion(key, previous);
  log_("deployed " + key.str() + " version " + std::to_string(version) + " (" +
       std::to_string(library.size()) + " byte library, " + std::to_string(constants.size()) +
       " bytes of constants)");

  KCHAIN_ASSIGN_OR_RETURN(FunctionInfo info, Describe(key));
  return DeployResult{std::move(info), created};
}

FunctionInfo Service::InfoLocked(const Entry& entry) const {
  FunctionInfo info;
  info.key = entry.stored.key;
  info.version = entry.stored.current;
  info.history = entry.stored.history;
  info.load_error = entry.load_error;
  if (entry.loaded != nullptr) {
    info.manifest = entry.loaded->manifest();
    info.instance_device_bytes = entry.loaded->instance_device_bytes();
    info.library_load_us = entry.loaded->library_load_us;
    info.constants_load_us = entry.loaded->constants_load_us;
    info.pool = scheduler_->Stats(info.key);
  }
  return info;
}

std::vector<FunctionInfo> Service::List(const std::optional<std::string>& tenant) const {
  std::shared_lock lock(mu_);
  std::vector<FunctionInfo> out;
  for (const auto& [key, entry] : entries_) {
    if (entry.stored.current == 0) continue;  // first deploy still in progress
    if (tenant && key.tenant != *tenant) continue;
    out.push_back(InfoLocked(entry));
  }
  return out;
}

StatusOr<FunctionInfo> Service::Describe(const FunctionKey& key) const {
  std::shared_lock lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.stored.current == 0) {
    return NotFoundError("no function '" + key.name + "'");
  }
  return InfoLocked(it->second);
}

std::shared_ptr<const LoadedVersion> Service::Current(const FunctionKey& key) const {
  std::shared_lock lock(mu_);
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : it->second.loaded;
}

std::shared_ptr<FunctionMetrics> Service::MetricsFor(const FunctionKey& key) const {
  std::shared_lock lock(mu_);
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : it->second.metrics;
}

Status Service::Delete(const FunctionKey& key) {
  {
    std::unique_lock lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second.stored.current == 0) {
      return NotFoundError("no function '" + key.name + "'");
    }
    if (it->second.busy) {
      return AlreadyExistsError("a deploy or delete of '" + key.name + "' is in progress");
    }
    it->second.busy = true;
  }
  scheduler_->Remove(key);
  Status status = store_->Delete(key);
  {
    std::unique_lock lock(mu_);
    if (status.ok()) {
      entries_.erase(key);
    } else {
      entries_.at(key).busy = false;
    }
  }
  if (status.ok()) log_("deleted " + key.str());
  return status;
}

StatusOr<Scheduler::Lease> Service::Acquire(const FunctionKey& key) {
  if (shutting_down_.load(std::memory_order_relaxed)) {
    return UnavailableError("the server is shutting down");
  }
  auto lease = scheduler_->Acquire(key);
  if (!lease.ok() && lease.status().code() == StatusCode::kNotFound) {
    // A stored function that failed to load is known, but cannot run.
    std::shared_lock lock(mu_);
    auto it = entries_.find(key);
    if (it != entries_.end() && !it->second.load_error.empty()) {
      return UnavailableError("function '" + key.name +
                              "' failed to load: " + it->second.load_error + " (deploy it again)");
    }
  }
  return lease;
}

StatusOr<int> Service::Park(const FunctionKey& key) {
  KCHAIN_RETURN_IF_ERROR(Describe(key).status());
  return scheduler_->ParkIdle(key);
}

Status Service::Unload(const FunctionKey& key) {
  KCHAIN_RETURN_IF_ERROR(Describe(key).status());
  if (scheduler_->Unload(key)) log_("unloaded " + key.str());
  return Status();
}

Status Service::Load(const FunctionKey& key) {
  KCHAIN_ASSIGN_OR_RETURN(FunctionInfo info, Describe(key));
  if (!info.load_error.empty()) {
    return UnavailableError("function '" + key.name + "' failed to load: " + info.load_error +
                            " (deploy it again)");
  }
  if (scheduler_->Reload(key) && info.pool.unloaded) log_("loaded " + key.str());
  const PoolStats pool = scheduler_->Stats(key);
  if (pool.resident_idle + pool.busy > 0) return Status();
  // Bring one instance up and hand it straight back: it stays resident and idle.
  auto lease = Acquire(key);
  return lease.status();
}

StatusOr<std::string> Service::PutUpload(const std::string& tenant,
                                         std::span<const std::byte> bytes) {
  if (bytes.empty()) return InvalidArgumentError("the upload is empty");
  return store_->PutUpload(tenant, bytes);
}

StatusOr<std::string> Service::ReadUpload(const std::string& tenant, const std::string& id) const {
  return store_->ReadUpload(tenant, id);
}

bool Service::Ready(std::string* why) const {
  if (shutting_down_.load()) {
    *why = "the server is shutting down";
    return false;
  }
  return executor_->Ready(why);
}

void Service::BeginShutdown() {
  shutting_down_.store(true);
  scheduler_->BeginShutdown();
}

}  // namespace kchain::gateway
