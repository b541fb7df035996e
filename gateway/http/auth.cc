#include "gateway/http/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <nlohmann/json.hpp>
#include <set>

#include "gateway/core/function_store.h"
#include "kchain/manifest.h"
#include "runtime/json_input.h"

namespace kchain::gateway {
namespace {

std::array<unsigned char, 32> Digest(std::string_view key) {
  std::array<unsigned char, 32> out{};
  unsigned int len = 0;
  EVP_Digest(key.data(), key.size(), out.data(), &len, EVP_sha256(), nullptr);
  return out;
}

}  // namespace

StatusOr<ApiKeys> ApiKeys::LoadFile(const std::string& path) {
  KCHAIN_ASSIGN_OR_RETURN(std::string text, kchain::ReadFileToString(path));
  auto keys = Parse(text);
  if (!keys.ok()) return keys.status().WithContext("API key file '" + path + "'");
  return keys;
}

StatusOr<ApiKeys> ApiKeys::Parse(std::string_view json_text) {
  auto parsed = kchain::ParseJsonInput(json_text, "API keys");
  if (!parsed.ok()) {
    // The parser's message quotes the text near the error, which may be a key: withhold it.
    return InvalidArgumentError(
        "not valid JSON, nested too deep, or with a repeated key (details withheld: they could "
        "quote a key)");
  }
  nlohmann::json doc = std::move(*parsed);
  if (!doc.is_object() || !doc.contains("keys") || !doc["keys"].is_array()) {
    return InvalidArgumentError("expected {\"keys\": [{\"key\": ..., \"tenant\": ...}, ...]}");
  }
  ApiKeys out;
  std::set<std::array<unsigned char, 32>> seen;
  for (size_t i = 0; i < doc["keys"].size(); ++i) {
    const auto& entry = doc["keys"][i];
    const std::string where = "keys[" + std::to_string(i) + "]";
    if (!entry.is_object() || !entry.contains("key") || !entry["key"].is_string() ||
        !entry.contains("tenant") || !entry["tenant"].is_string()) {
      return InvalidArgumentError(where + " needs a string \"key\" and a string \"tenant\"");
    }
    for (const auto& item : entry.items()) {
      if (item.key() != "key" && item.key() != "tenant" && item.key() != "admin") {
        return InvalidArgumentError(where + ": unknown field '" + item.key() + "'");
      }
    }
    const std::string key = entry["key"];
    if (key.size() < 16) {
      return InvalidArgumentError(where + ": the key is shorter than 16 characters");
    }
    if (key.find_first_of(" \t\r\n") != std::string::npos) {
      return InvalidArgumentError(where + ": the key contains white space");
    }
    Entry e;
    e.caller.tenant = entry["tenant"];
    KCHAIN_RETURN_IF_ERROR(ValidateName(e.caller.tenant, "tenant").WithContext(where));
    if (entry.contains("admin")) {
      if (!entry["admin"].is_boolean())
        return InvalidArgumentError(where + ": admin must be true or false");
      e.caller.admin = entry["admin"];
    }
    e.digest = Digest(key);
    if (!seen.insert(e.digest).second) {
      return InvalidArgumentError(where + ": the same key appears twice");
    }
    out.entries_.push_back(std::move(e));
  }
  if (out.entries_.empty()) return InvalidArgumentError("no keys");
  return out;
}

StatusOr<Caller> ApiKeys::Authenticate(std::string_view authorization) const {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.empty()) {
    return UnauthenticatedError("missing API key: send \"Authorization: Bearer <key>\"");
  }
  if (authorization.size() <= kBearer.size() ||
      authorization.substr(0, kBearer.size()) != kBearer) {
    return UnauthenticatedError("malformed Authorization header: expected \"Bearer <key>\"");
  }
  const auto digest = Digest(authorization.substr(kBearer.size()));
  // Every entry is compared, whatever matched first.
  size_t match = entries_.size();
  for (size_t i = 0; i < entries_.size(); ++i) {
    const int differs = CRYPTO_memcmp(digest.data(), entries_[i].digest.data(), digest.size());
    const size_t mask = static_cast<size_t>(differs == 0) * ~size_t{0};
    match = (mask & i) | (~mask & match);
  }
  if (match == entries_.size()) return UnauthenticatedError("invalid API key");
  return entries_[match].caller;
}

size_t ApiKeys::tenant_count() const {
  std::set<std::string> tenants;
  for (const auto& e : entries_) tenants.insert(e.caller.tenant);
  return tenants.size();
}

}  // namespace kchain::gateway
