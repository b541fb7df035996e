// Internal to the HTTP layer (http_server.cc, v2_http.cc): the per-request context kept on
// the thread that serves a request, and small helpers the route files share.
#ifndef KCHAIN_GATEWAY_HTTP_HTTP_CONTEXT_H_
#define KCHAIN_GATEWAY_HTTP_HTTP_CONTEXT_H_

#include <httplib.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "gateway/http/auth.h"
#include "runtime/clock.h"

namespace kchain::gateway {

using HttpClock = std::chrono::steady_clock;

// Per-request facts the access log line and the error renderer need.
struct RequestContext {
  HttpClock::time_point start;
  std::string function;
  const char* start_type = "-";
  bool counted = false;  // counted in in_flight_ (requests rejected before routing are not)
  bool v2 = false;       // a /v2 path: errors in the v2 protocol's shape
  Caller caller;         // who is asking (set by authentication)
};
extern thread_local RequestContext t_request;

// JSON text; invalid UTF-8 (from a quoted file name, say) is replaced, never thrown on.
inline std::string Dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Media types compare case-insensitively (RFC 9110); parameters after ';' are ignored.
inline bool HasContentType(const httplib::Request& req, std::string_view type) {
  const std::string value = req.get_header_value("Content-Type");
  if (value.size() < type.size()) return false;
  for (size_t i = 0; i < type.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(value[i])) != type[i]) return false;
  }
  return value.size() == type.size() || value[type.size()] == ';' || value[type.size()] == ' ';
}

// Sets `body` as the response, moved (not copied), and out of the HTTP library's reach for
// compression: it would brotli-compress a JSON tensor at the highest quality for any client
// that accepts br (httpx does once the brotli module is installed), which takes 90 s for
// vecadd's 9 MB of JSON output. The library compresses only bodies set with set_content or
// chunked providers, not a provider of known length.
inline void SetUncompressedBody(httplib::Response& res, std::string body, const char* type) {
  if (body.empty()) {
    res.set_content(body, type);
    return;
  }
  auto shared = std::make_shared<const std::string>(std::move(body));
  res.set_content_provider(shared->size(), type,
                           [shared](size_t offset, size_t length, httplib::DataSink& sink) {
                             return sink.write(shared->data() + offset, length);
                           });
}

}  // namespace kchain::gateway

#endif  // KCHAIN_GATEWAY_HTTP_HTTP_CONTEXT_H_
