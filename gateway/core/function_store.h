// FunctionStore: deployed functions on disk, written atomically.
//
// Layout under the data directory:
//   tenants/<tenant>/functions/<name>/function.json     current version + deploy history
//   tenants/<tenant>/functions/<name>/v<N>/manifest.json
//   tenants/<tenant>/functions/<name>/v<N>/kernel.so     never modified once written
//   tenants/<tenant>/functions/<name>/v<N>/constants.bin (when the function has constants)
//   uploads/<tenant>/<sha256>                             blobs uploaded ahead of a deploy,
//                                                         removed a day after they were written
//   tmp/                                                  staging; emptied at start
// A version folder is written under tmp/ and renamed into place whole; function.json is
// replaced atomically. A crash at any point leaves either the old or the new version current,
// and Load() removes whatever no function.json refers to.
//
// Thread-safety: calls on distinct functions may run concurrently; the caller serializes
// calls on one function (the service does, with its deploy lock).
#ifndef KCHAIN_GATEWAY_CORE_FUNCTION_STORE_H_
#define KCHAIN_GATEWAY_CORE_FUNCTION_STORE_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/exec/stored_version.h"
#include "kchain/status.h"

namespace kchain::gateway {

// Function and tenant names: 1 to 64 characters of [A-Za-z0-9_.-], starting with a letter or
// digit (so never "." or ".." and never a path). kInvalidArgument naming `what` otherwise.
Status ValidateName(std::string_view name, std::string_view what);

// {"version", "deployed_at", "library_sha256", "library_bytes", "constants_bytes"}: as stored
// in function.json and as reported by the API.
nlohmann::json VersionRecordToJson(const VersionRecord& record);

struct StoredFunction {
  FunctionKey key;
  uint64_t current = 0;
  std::vector<VersionRecord> history;  // oldest first; the last is the current version
};

class FunctionStore {
 public:
  // Creates the layout under `data_dir` if needed and empties tmp/.
  static StatusOr<std::unique_ptr<FunctionStore>> Open(const std::string& data_dir);

  // Every function on disk with its current version. Versions no function.json refers to
  // (an interrupted deploy) are removed. A function whose files are unreadable is reported in
  // `problems` (one line each) and skipped.
  std::vector<std::pair<StoredFunction, StoredVersion>> Load(std::vector<std::string>* problems);

  // Writes a new, not yet current, version folder. kInsufficientStorage when the disk is full.
  StatusOr<StoredVersion> Stage(const FunctionKey& key, uint64_t version,
                                std::string_view manifest_json, std::span<const std::byte> library,
                                std::span<const std::byte> constants);
  // Makes `function.current` current on disk (atomic replace of function.json).
  Status Commit(const StoredFunction& function);
  // Removes one version folder (a failed deploy, or a version replaced by a newer one), and
  // the function's folder when nothing else is in it.
  void RemoveVersion(const FunctionKey& key, uint64_t version);
  // Removes the function: function.json first (so a crash leaves nothing current), then files.
  Status Delete(const FunctionKey& key);

  // Blobs uploaded ahead of a deploy, per tenant, addressed by their SHA-256 (64 lowercase
  // hex digits).
  StatusOr<std::string> PutUpload(const std::string& tenant, std::span<const std::byte> bytes);
  // kNotFound for an unknown id, kInvalidArgument for a malformed one.
  StatusOr<std::string> ReadUpload(const std::string& tenant, const std::string& id) const;
  // Removes uploads older than a day (at start-up, and at most hourly on new uploads).
  void ExpireUploads();

  const std::string& data_dir() const { return data_dir_; }
  // Set when Open() found something to warn about that did not stop it (a full disk).
  const std::string& start_warning() const { return start_warning_; }

 private:
  explicit FunctionStore(std::string data_dir) : data_dir_(std::move(data_dir)) {}
  std::string FunctionDir(const FunctionKey& key) const;
  std::string VersionDir(const FunctionKey& key, uint64_t version) const;
  StoredVersion VersionPaths(const FunctionKey& key, const VersionRecord& record) const;

  std::string data_dir_;
  std::string start_warning_;
  std::mutex expiry_mu_;
  std::chrono::steady_clock::time_point last_expiry_{};
};

}  // namespace kchain::gateway

#endif  // KCHAIN_GATEWAY_CORE_FUNCTION_STORE_H_
