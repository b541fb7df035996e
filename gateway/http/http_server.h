// HttpServer: the REST API (docs/api.md) over cpp-httplib, in front of a Service: kchain's own
// /v1 API, and beside it the KServe v2 / Open Inference Protocol's inference surface under /v2
// (gateway/http/v2_http.cc, gateway/http/v2_protocol.h).
//
// Transport only: routes parse requests into native types, call the service, and turn its
// statuses into responses through the one mapping in http_errors.h. No handler can take the
// server down: exceptions become 500 responses.
//
// Thread-safety: Bind, Serve and Stop may be called from different threads; Stop may be
// called at any time, also before Serve.
#ifndef KCHAIN_GATEWAY_HTTP_HTTP_SERVER_H_
#define KCHAIN_GATEWAY_HTTP_HTTP_SERVER_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gateway/core/log.h"
#include "gateway/core/service.h"
#include "gateway/http/auth.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace kchain::gateway {

class HttpTransport;

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;   // 0: any free port
  int threads = 16;  // worker threads; each serves one connection at a time
  uint64_t max_body = uint64_t{1} << 30;
  int keep_alive_timeout_s = 5;
  int read_timeout_s = 60;
  // API keys; null runs the development mode: no authentication, every caller is an admin
  // of the tenant "default".
  const ApiKeys* keys = nullptr;
};

class HttpServer {
 public:
  HttpServer(Service* service, const Logger* logger, HttpOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the listening socket; returns the port (useful with port 0). kUnavailable when the
  // address is taken or not ours.
  StatusOr<int> Bind();
  // Serves until Stop(). Returns after in-flight requests have completed.
  void Serve();
  // Graceful: stop accepting connections, let in-flight requests finish, then Serve returns.
  void Stop();

  int port() const { return port_; }
  // Requests being handled right now.
  int in_flight() const { return in_flight_.load(); }

 private:
  struct Handlers;
  struct V2Handlers;
  // Registers the /v2 routes and appends their paths and allowed methods to `allowed`.
  void RegisterV2Routes(std::vector<std::pair<std::string, std::string>>* allowed);
  // Sends `status` as an error response: {"error": {"code", "message"}}, or on /v2 paths the
  // v2 protocol's {"error": "message"}; the HTTP status comes from the one mapping.
  void SendStatus(httplib::Response& res, const Status& status) const;
  // The tenant a request acts on (the caller's, or ?tenant= for an admin), and the function
  // named by the path's first capture. On failure the error response is sent.
  bool ResolveTenant(const httplib::Request& req, httplib::Response& res,
                     std::string* tenant) const;
  bool ResolveKey(const httplib::Request& req, httplib::Response& res, FunctionKey* key) const;
  // `message` without the absolute data directory.
  std::string Scrub(std::string message) const;
  // For rejections before routing, when the request's body has not been read.
  void RejectBeforeBody(httplib::Response& res, const Status& status) const;

  Service* service_;
  const Logger* logger_;
  HttpOptions options_;
  std::unique_ptr<HttpTransport> server_;
  std::function<std::string(std::string)> scrub_;
  int port_ = 0;
  int listen_socket_ = -1;  // the listening socket, to deepen its backlog after bind
  std::atomic<int> in_flight_{0};
};

}  // namespace kchain::gateway

#endif  // KCHAIN_GATEWAY_HTTP_HTTP_SERVER_H_
