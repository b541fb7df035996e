// API keys: Bearer tokens, each mapped to a tenant, read from a file at start.
//
// File format (JSON):
//   {"keys": [{"key": "<secret, 16+ characters>", "tenant": "acme"},
//             {"key": "<secret>", "tenant": "ops", "admin": true}]}
// Only SHA-256 digests of the keys are kept in memory. A presented key is hashed and compared
// against every entry with a constant-time comparison, so neither the match nor its position
// shows in the timing. Keys are never logged.
//
// Thread-safety: immutable after loading; safe from any thread.
#ifndef KCHAIN_GATEWAY_HTTP_AUTH_H_
#define KCHAIN_GATEWAY_HTTP_AUTH_H_

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "kchain/status.h"

namespace kchain::gateway {

struct Caller {
  std::string tenant;
  bool admin = false;  // may see and act on every tenant's functions
};

class ApiKeys {
 public:
  static StatusOr<ApiKeys> LoadFile(const std::string& path);
  static StatusOr<ApiKeys> Parse(std::string_view json_text);

  // The caller behind an Authorization header value ("Bearer <key>"). kUnauthenticated when
  // it is missing, malformed or unknown; the message never repeats the key.
  StatusOr<Caller> Authenticate(std::string_view authorization) const;

  size_t size() const { return entries_.size(); }
  size_t tenant_count() const;

 private:
  struct Entry {
    std::array<unsigned char, 32> digest;
    Caller caller;
  };
  std::vector<Entry> entries_;
};

}  // namespace kchain::gateway

#endif  // KCHAIN_GATEWAY_HTTP_AUTH_H_
