// What the function store hands an executor: a function's identity and the files of one
// stored version. Plain data, so that exec/ compiles against neither the store nor JSON.
#ifndef KCHAIN_GATEWAY_EXEC_STORED_VERSION_H_
#define KCHAIN_GATEWAY_EXEC_STORED_VERSION_H_

#include <cstdint>
#include <string>

namespace kchain::gateway {

// Functions are namespaced per tenant.
struct FunctionKey {
  std::string tenant;
  std::string name;
  std::string str() const { return tenant + "/" + name; }
  friend bool operator==(const FunctionKey&, const FunctionKey&) = default;
  friend auto operator<=>(const FunctionKey&, const FunctionKey&) = default;
};

struct VersionRecord {
  uint64_t version = 0;
  std::string deployed_at;  // RFC 3339, UTC
  std::string library_sha256;
  uint64_t library_bytes = 0;
  uint64_t constants_bytes = 0;
};

struct StoredVersion {
  FunctionKey key;
  VersionRecord record;
  std::string dir;
  std::string manifest_path;
  std::string library_path;
  std::string constants_path;  // empty when there are no constants
};

}  // namespace kchain::gateway

#endif  // KCHAIN_GATEWAY_EXEC_STORED_VERSION_H_
