#include "gateway/core/function_store.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "gateway/core/files.h"
#include "kchain/manifest.h"

namespace kchain::gateway {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {
constexpr const char* kManifestFile = "manifest.json";
constexpr const char* kLibraryFile = "kernel.so";
constexpr const char* kConstantsFile = "constants.bin";
constexpr const char* kFunctionFile = "function.json";

StatusOr<StoredFunction> ParseFunctionFile(const std::string& path, const FunctionKey& key) {
  KCHAIN_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  try {
    const json doc = json::parse(text);
    StoredFunction f;
    f.key = key;
    f.current = doc.at("current").get<uint64_t>();
    for (const json& r : doc.at("history")) {
      VersionRecord rec;
      rec.version = r.at("version").get<uint64_t>();
      rec.deployed_at = r.at("deployed_at").get<std::string>();
      rec.library_sha256 = r.at("library_sha256").get<std::string>();
      rec.library_bytes = r.at("library_bytes").get<uint64_t>();
      rec.constants_bytes = r.at("constants_bytes").get<uint64_t>();
      f.history.push_back(std::move(rec));
    }
    if (f.history.empty() || f.history.back().version != f.current) {
      return InvalidArgumentError(path + ": history does not end at the current version");
    }
    return f;
  } catch (const json::exception& e) {
    return InvalidArgumentError(path + ": " + e.what());
  }
}

bool IsVersionDir(const std::string& name, uint64_t* version) {
  if (name.size() < 2 || name[0] != 'v') return false;
  for (size_t i = 1; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
  }
  *version = std::stoull(name.substr(1));
  return true;
}

}  // namespace

json VersionRecordToJson(const VersionRecord& r) {
  return {{"version", r.version},
          {"deployed_at", r.deployed_at},
          {"library_sha256", r.library_sha256},
          {"library_bytes", r.library_bytes},
          {"constants_bytes", r.constants_bytes}};
}

Status ValidateName(std::string_view name, std::string_view what) {
  auto fail = [&](const std::string& why) {
    return InvalidArgumentError(std::string(what) + " name '" + std::string(name.substr(0, 80)) +
                                (name.size() > 80 ? "...'" : "'") + " is invalid: " + why);
  };
  if (name.empty()) return fail("it is empty");
  if (name.size() > 64) return fail("longer than 64 characters");
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(name[0])) return fail("it must start with a letter or a digit");
  for (char c : name) {
    if (!alnum(c) && c != '-' && c != '_' && c != '.') {
      return fail("only letters, digits, '-', '_' and '.' are allowed");
    }
  }
  return Status();
}

StatusOr<std::unique_ptr<FunctionStore>> FunctionStore::Open(const std::string& data_dir) {
  std::error_code ec;
  for (const char* sub : {"tenants", "uploads", "tmp"}) {
    fs::create_directories(fs::path(data_dir) / sub, ec);
    if (ec) {
      return InvalidArgumentError("data directory '" + data_dir + "': cannot create " + sub +
                                  "/: " + ec.message());
    }
    // Only the gateway's user may look inside (workers run as another user).
    fs::permissions(fs::path(data_dir) / sub, fs::perms::owner_all, ec);
  }
  // Leftovers of interrupted writes.
  for (const auto& entry : fs::directory_iterator(fs::path(data_dir) / "tmp", ec)) {
    fs::remove_all(entry.path(), ec);
  }
  // Uploads are staging for deploys, kept a day.
  const auto expiry = fs::file_time_type::clock::now() - std::chrono::hours(24);
  for (const auto& entry : fs::recursive_directory_iterator(fs::path(data_dir) / "uploads", ec)) {
    if (entry.is_regular_file(ec) && entry.last_write_time(ec) < expiry)
      fs::remove(entry.path(), ec);
  }
  // Leftovers of atomic writes cut short by a crash, in uploads (function folders are cleaned
  // by Load()).
  for (const auto& entry : fs::recursive_directory_iterator(fs::path(data_dir) / "uploads", ec)) {
    if (entry.is_regular_file(ec) && IsAtomicWriteLeftover(entry.path().filename().string())) {
      fs::remove(entry.path(), ec);
    }
  }
  std::unique_ptr<FunctionStore> store(new FunctionStore(fs::absolute(data_dir).string()));
  // Probe that the folder is writable now rather than at the first deploy. A full disk is not
  // fatal: the stored functions can still be served, and deploys get 507 until space is freed.
  const std::string probe = (fs::path(data_dir) / "tmp" / "probe").string();
  Status probed = WriteFileAtomic(probe, AsBytes("ok"));
  fs::remove(probe, ec);
  if (probed.code() == StatusCode::kInsufficientStorage) {
    store->start_warning_ =
        "the data directory's disk is full: stored functions are served, "
        "but deploys and uploads fail (507) until space is freed (" +
        probed.message() + ")";
  } else if (!probed.ok()) {
    return probed;
  }
  store->ExpireUploads();
  return store;
}

std::string FunctionStore::FunctionDir(const FunctionKey& key) const {
  return (fs::path(data_dir_) / "tenants" / key.tenant / "functions" / key.name).string();
}

std::string FunctionStore::VersionDir(const FunctionKey& key, uint64_t version) const {
  return (fs::path(FunctionDir(key)) / ("v" + std::to_string(version))).string();
}

StoredVersion FunctionStore::VersionPaths(const FunctionKey& key,
                                          const VersionRecord& record) const {
  StoredVersion v;
  v.key = key;
  v.record = record;
  v.dir = VersionDir(key, record.version);
  v.manifest_path = (fs::path(v.dir) / kManifestFile).string();
  v.library_path = (fs::path(v.dir) / kLibraryFile).string();
  if (record.constants_bytes > 0) v.constants_path = (fs::path(v.dir) / kConstantsFile).string();
  return v;
}

std::vector<std::pair<StoredFunction, StoredVersion>> FunctionStore::Load(
    std::vector<std::string>* problems) {
  std::vector<std::pair<StoredFunction, StoredVersion>> out;
  std::error_code ec;
  for (const auto& tenant : fs::directory_iterator(fs::path(data_dir_) / "tenants", ec)) {
    const std::string tenant_name = tenant.path().filename();
    if (!ValidateName(tenant_name, "tenant").ok()) continue;
    std::error_code ec2;
    for (const auto& dir : fs::directory_iterator(tenant.path() / "functions", ec2)) {
      const FunctionKey key{tenant_name, dir.path().filename()};
      if (!ValidateName(key.name, "function").ok()) continue;
      const std::string file = (dir.path() / kFunctionFile).string();
      if (!fs::exists(file)) {
        // A deploy that never committed, or a delete that was interrupted.
        fs::remove_all(dir.path(), ec);
        continue;
      }
      auto function = ParseFunctionFile(file, key);
      if (!function.ok()) {
        problems->push_back(key.str() + ": " + function.status().message());
        continue;
      }
      // Drop version folders that are not current (replaced, or never committed), and the
      // temporary files of replaces of function.json that a crash cut short.
      for (const auto& v : fs::directory_iterator(dir.path(), ec)) {
        if (v.is_regular_file(ec) && IsAtomicWriteLeftover(v.path().filename().string())) {
          fs::remove(v.path(), ec);
          continue;
        }
        uint64_t number = 0;
        if (v.is_directory() && IsVersionDir(v.path().filename(), &number) &&
            number != function->current) {
          fs::remove_all(v.path(), ec);
        }
      }
      StoredVersion version = VersionPaths(key, function->history.back());
      if (!fs::exists(version.library_path) || !fs::exists(version.manifest_path)) {
        problems->push_back(key.str() + ": files of version " + std::to_string(function->current) +
                            " are missing");
        continue;
      }
      out.emplace_back(std::move(*function), std::move(version));
    }
  }
  return out;
}

StatusOr<StoredVersion> FunctionStore::Stage(const FunctionKey& key, uint64_t version,
                                             std::string_view manifest_json,
                                             std::span<const std::byte> library,
                                             std::span<const std::byte> constants) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  const fs::path staging = fs::path(data_dir_) / "tmp" / ("stage-" + std::to_string(rng()));
  std::error_code ec;
  fs::create_directories(staging, ec);
  if (ec) return StorageError("cannot create '" + staging.string() + "'", ec);
  VersionRecord record;
  record.version = version;
  record.deployed_at = NowRfc3339();
  record.library_sha256 = Sha256Hex(library);
  record.library_bytes = library.size();
  record.constants_bytes = constants.size();

  Status status = WriteNewFile((staging / kManifestFile).string(), AsBytes(manifest_json));
  if (status.ok()) status = WriteNewFile((staging / kLibraryFile).string(), library);
  if (status.ok() && !constants.empty()) {
    status = WriteNewFile((staging / kConstantsFile).string(), constants);
  }
  if (status.ok()) status = SyncDirectory(staging.string());
  const std::string function_dir = FunctionDir(key);
  if (status.ok()) {
    fs::create_directories(function_dir, ec);
    if (ec) status = StorageError("cannot create '" + function_dir + "'", ec);
  }
  const std::string final_dir = VersionDir(key, version);
  if (status.ok()) {
    fs::remove_all(final_dir, ec);  // a leftover of a deploy that crashed before committing
    fs::rename(staging, final_dir, ec);
    if (ec) status = StorageError("cannot move a staged version into place", ec);
  }
  if (status.ok()) status = SyncDirectory(function_dir);
  if (!status.ok()) {
    fs::remove_all(staging, ec);
    fs::remove_all(final_dir, ec);
    return status.WithContext("storing version " + std::to_string(version) + " of '" + key.str() +
                              "'");
  }
  return VersionPaths(key, record);
}

Status FunctionStore::Commit(const StoredFunction& function) {
  json history = json::array();
  for (const auto& r : function.history) history.push_back(VersionRecordToJson(r));
  const json doc = {{"tenant", function.key.tenant},
                    {"name", function.key.name},
                    {"current", function.current},
                    {"history", history}};
  return WriteFileAtomic((fs::path(FunctionDir(function.key)) / kFunctionFile).string(),
                         AsBytes(doc.dump(2)));
}

void FunctionStore::RemoveVersion(const FunctionKey& key, uint64_t version) {
  std::error_code ec;
  fs::remove_all(VersionDir(key, version), ec);
  // A first deploy that failed leaves nothing behind, not even an empty folder.
  const fs::path dir = FunctionDir(key);
  if (!fs::exists(dir / kFunctionFile, ec) && fs::is_empty(dir, ec)) fs::remove(dir, ec);
}

Status FunctionStore::Delete(const FunctionKey& key) {
  const fs::path dir = FunctionDir(key);
  std::error_code ec;
  fs::remove(dir / kFunctionFile, ec);
  if (ec)
    return InternalError("cannot remove '" + (dir / kFunctionFile).string() + "': " + ec.message());
  KCHAIN_RETURN_IF_ERROR(SyncDirectory(dir.string()));
  fs::remove_all(dir, ec);
  return Status();
}

void FunctionStore::ExpireUploads() {
  {
    std::lock_guard<std::mutex> lock(expiry_mu_);
    const auto now = std::chrono::steady_clock::now();
    if (last_expiry_ != std::chrono::steady_clock::time_point{} &&
        now - last_expiry_ < std::chrono::hours(1)) {
      return;
    }
    last_expiry_ = now;
  }
  // Uploads are staging for deploys, kept a day.
  std::error_code ec;
  const auto expiry = fs::file_time_type::clock::now() - std::chrono::hours(24);
  for (const auto& entry : fs::recursive_directory_iterator(fs::path(data_dir_) / "uploads", ec)) {
    if (entry.is_regular_file(ec) && entry.last_write_time(ec) < expiry)
      fs::remove(entry.path(), ec);
  }
}

StatusOr<std::string> FunctionStore::PutUpload(const std::string& tenant,
                                               std::span<const std::byte> bytes) {
  KCHAIN_RETURN_IF_ERROR(ValidateName(tenant, "tenant"));
  ExpireUploads();
  const std::string id = Sha256Hex(bytes);
  const fs::path dir = fs::path(data_dir_) / "uploads" / tenant;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return StorageError("cannot create '" + dir.string() + "'", ec);
  const std::string path = (dir / id).string();
  if (!fs::exists(path, ec)) KCHAIN_RETURN_IF_ERROR(WriteFileAtomic(path, bytes));
  return id;
}

StatusOr<std::string> FunctionStore::ReadUpload(const std::string& tenant,
                                                const std::string& id) const {
  KCHAIN_RETURN_IF_ERROR(ValidateName(tenant, "tenant"));
  if (id.size() != 64 || id.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return InvalidArgumentError("upload id '" + id.substr(0, 80) +
                                "' is not a SHA-256 (64 lowercase hex digits)");
  }
  auto bytes = ReadFileToString((fs::path(data_dir_) / "uploads" / tenant / id).string());
  if (!bytes.ok() && bytes.status().code() == StatusCode::kNotFound) {
    return NotFoundError("no upload with id " + id + " (POST the bytes to /v1/uploads first)");
  }
  return bytes;
}

}  // namespace kchain::gateway
