#include "gateway/http/http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <regex>

#include "gateway/core/files.h"
#include "gateway/core/invocation.h"
#include "gateway/http/http_context.h"
#include "gateway/http/http_errors.h"
#include "gateway/http/http_transport.h"
#include "gateway/http/openapi_document.h"
#include "gateway/http/tensor_codec.h"
#include "gateway/http/v1_protocol.h"
#include "runtime/json_input.h"

namespace kchain::gateway {

thread_local RequestContext t_request;

namespace {

using Clock = HttpClock;
using nlohmann::json;
using v1::CheckInputSize;
using v1::CheckInvokeBody;
using v1::InfoJson;
using v1::TimingsJson;
using v1::WorkersJson;

constexpr const char* kDefaultTenant = "default";
constexpr const char* kJson = "application/json";
constexpr const char* kBinary = "application/octet-stream";
const std::string kName = "([^/]+)";

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Routes whose handlers read a body only when the request declares one.
bool BodyIsOptional(std::string_view path) {
  return EndsWith(path, "/park") || path == "/v2/repository/index" ||
         (path.rfind("/v2/repository/models/", 0) == 0 &&
          (EndsWith(path, "/load") || EndsWith(path, "/unload")));
}

}  // namespace

struct HttpServer::Handlers {
  static bool Tenant(HttpServer* self, const httplib::Request& req, httplib::Response& res,
                     std::string* tenant) {
    return self->ResolveTenant(req, res, tenant);
  }

  static void Json(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(Dump(body), kJson);
  }

  static bool Key(HttpServer* self, const httplib::Request& req, httplib::Response& res,
                  FunctionKey* key) {
    return self->ResolveKey(req, res, key);
  }

  // Admins only: every worker process, whom it serves and what it hosts.
  static void Workers(HttpServer* self, const httplib::Request&, httplib::Response& res) {
    if (!t_request.caller.admin) {
      return self->SendStatus(res, NotFoundError("no route for GET /v1/workers"));
    }
    const ExecutorStats stats = self->service_->executor().Stats();
    json workers = json::array();
    for (const WorkerInfo& w : stats.workers) {
      workers.push_back({{"id", w.id},
                         {"pid", w.pid},
                         {"tenant", w.tenant},
                         {"scope_key", w.scope_key},
                         {"instances", w.instances},
                         {"functions", w.functions},
                         {"idle_s", w.idle_s}});
    }
    json body = WorkersJson(stats);
    body["last_restart"] = stats.last_restart;
    body["last_spawn_error"] = stats.last_spawn_error;
    body["workers"] = workers;
    Json(res, 200, body);
  }

  static void Root(HttpServer* self, const httplib::Request&, httplib::Response& res) {
    const ExecutorStats stats = self->service_->executor().Stats();
    json body = {{"server", "kchain-gateway"},
                 {"version", KCHAIN_VERSION},
                 {"api", "v1"},
                 {"tenant", t_request.caller.tenant},
                 {"admin", t_request.caller.admin},
                 {"authentication", self->options_.keys != nullptr ? "api keys" : "none"},
                 {"isolation", stats.isolation},
                 {"sandbox", stats.sandbox},
                 {"device",
                  {{"kind", std::string(DeviceKindName(self->service_->executor().device_kind()))},
                   {"name", self->service_->executor().device_name()}}}};
    if (stats.isolation == "process") {
      body["workers"] = WorkersJson(stats);
      // The description names a function: admins only.
      if (t_request.caller.admin) {
        body["workers"]["last_restart"] = stats.last_restart;
        body["workers"]["last_spawn_error"] = stats.last_spawn_error;
      }
    }
    Json(res, 200, body);
  }

  // Unauthenticated (probes): reports state and counts, never names.
  static void Ready(HttpServer* self, const httplib::Request&, httplib::Response& res) {
    std::string why;
    const ExecutorStats stats = self->service_->executor().Stats();
    if (self->service_->Ready(&why)) {
      json body = {{"status", "ready"},
                   {"device", self->service_->executor().device_name()},
                   {"isolation", stats.isolation}};
      if (stats.isolation == "process") body["workers"] = WorkersJson(stats);
      Json(res, 200, body);
    } else {
      self->SendStatus(res, UnavailableError(why));
    }
  }

  static void List(HttpServer* self, const httplib::Request& req, httplib::Response& res) {
    std::optional<std::string> tenant;
    if (!t_request.caller.admin || req.has_param("tenant")) {
      std::string t;
      if (!Tenant(self, req, res, &t)) return;
      tenant = t;
    }
    json functions = json::array();
    for (const auto& info : self->service_->List(tenant)) {
      functions.push_back(InfoJson(info, self->service_->options().scheduler, self->scrub_));
    }
    Json(res, 200, {{"functions", functions}});
  }

  static void Describe(HttpServer* self, const httplib::Request& req, httplib::Response& res) {
    FunctionKey key;
    if (!Key(self, req, res, &key)) return;
    auto info = self->service_->Describe(key);
    if (!info.ok()) return self->SendStatus(res, info.status());
    Json(res, 200, InfoJson(*info, self->service_->options().scheduler, self->scrub_));
  }

  static void Delete(HttpServer* self, const httplib::Request& req, httplib::Response& res) {
    FunctionKey key;
    if (!Key(self, req, res, &key)) return;
    Status status = self->service_->Delete(key);
    if (!status.ok()) return self->SendStatus(res, status);
    Json(res, 200, {{"deleted", key.name}});
  }

  static void Park(HttpServer* self, const httplib::Request& req, httplib::Response& res) {
    FunctionKey key;
    if (!Key(self, req, res, &key)) return;
    auto parked = self->service_->Park(key);
    if (!parked.ok()) return self->SendStatus(res, parked.status());
    Json(res, 200, {{"parked", *parked}});
  }

  static void Upload(HttpServer* self, const httplib::Request& req, httplib::Response& res) {
    if (!HasContentType(req, kBinary)) {
      return self->SendStatus(
          res,
          InvalidArgumentError("upload the bytes with Content-Type: application/octet-stream"));
    }
    std::string tenant;
    if (!Tenant(self, req, res, &tenant)) return;
    auto id = self->service_->PutUpload(tenant, AsBytes(req.body));
    if (!id.ok()) return self->SendStatus(res, id.status());
    Json(res, 201, {{"upload_id", *id}, {"bytes", req.body.size()}});
  }

  static void Deploy(HttpServer* self, const httplib::Request& req, httplib::Response& res) {
    FunctionKey key;
    if (!Key(self, req, res, &key)) return;
    std::string manifest, library_storage, constants_storage;
    std::string_view library, constants;
    if (req.is_multipart_form_data()) {
      for (const auto& [field, part] : req.files) {
        if (field != "manifest" && field != "library" && field != "constants") {
          return self->SendStatus(
              res, InvalidArgumentError("unknown multipart field '" + field +
                                        "' (expected manifest, library, constants)"));
        }
      }
      if (!req.has_file("manifest")) {
        return self->SendStatus(res, InvalidArgumentError("multipart field 'manifest' is missing"));
      }
      if (!req.has_file("library")) {
        return self->SendStatus(res, InvalidArgumentError("multipart field 'library' is missing"));
      }
      manifest = req.get_file_value("manifest").content;
      // The multipart parts live in `req` for the whole handler: no copies.
      library = req.files.find("library")->second.content;
      if (req.has_file("constants")) constants = req.files.find("constants")->second.content;
    } else if (HasContentType(req, kJson)) {
      auto parsed = kchain::ParseJsonInput(req.body, "body");
      if (!parsed.ok()) return self->SendStatus(res, parsed.status());
      json body = std::move(*parsed);
      if (!body.is_object() || !body.contains("manifest") || !body.contains("library")) {
        return self->SendStatus(
            res, InvalidArgumentError("a JSON deploy is {\"manifest\": {...}, \"library\": "
                                      "\"<upload id>\", \"constants\": \"<upload id>\"}"));
      }
      for (const auto& item : body.items()) {
        if (item.key() != "manifest" && item.key() != "library" && item.key() != "constants") {
          return self->SendStatus(res, InvalidArgumentError("unknown key '" + item.key() + "'"));
        }
      }
      if (!body["manifest"].is_object() || !body["library"].is_string() ||
          (body.contains("constants") && !body["constants"].is_string())) {
        return self->SendStatus(
            res, InvalidArgumentError("manifest must be an object, library and constants upload "
                                      "ids (strings)"));
      }
      manifest = Dump(body["manifest"]);
      auto lib = self->service_->ReadUpload(key.tenant, body["library"].get<std::string>());
      if (!lib.ok()) {
        return self->SendStatus(res, InvalidArgumentError("library: " + lib.status().message()));
      }
      library_storage = std::move(*lib);
      library = library_storage;
      if (body.contains("constants")) {
        auto c = self->service_->ReadUpload(key.tenant, body["constants"].get<std::string>());
        if (!c.ok()) {
          return self->SendStatus(res, InvalidArgumentError("constants: " + c.status().message()));
        }
        constants_storage = std::move(*c);
        constants = constants_storage;
      }
    } else {
      return self->SendStatus(
          res, InvalidArgumentError("deploy with Content-Type multipart/form-data (fields "
                                    "manifest, library, constants) or application/json (with "
                                    "upload ids)"));
    }
    auto result = self->service_->Deploy(key, manifest, AsBytes(library), AsBytes(constants));
    if (!result.ok()) return self->SendStatus(res, result.status());
    Json(res, result->created ? 201 : 200,
         InfoJson(result->info, self->service_->options().scheduler, self->scrub_));
  }

  static void Invoke(HttpServer* self, const httplib::Request& req, httplib::Response& res) {
    const auto start = Clock::now();
    FunctionKey key;
    if (!Key(self, req, res, &key)) return;
    // Every failure of a known function counts in its metrics.
    auto fail = [&](const Status& status) {
      RecordInvokeFailure(*self->service_, key, status);
      self->SendStatus(res, status);
    };
    const bool binary = HasContentType(req, kBinary);
    const bool is_json = !binary && HasContentType(req, kJson);
    if (!binary && !is_json) {
      return fail(
          InvalidArgumentError("invoke with Content-Type application/octet-stream (raw "
                               "input bytes) or application/json ({\"input\": [...]})"));
    }

    // JSON is parsed, and a binary input's size checked, before an instance is taken, so that
    // no instance waits on parsing and a request that cannot run never starts one.
    json body;
    bool base64_output = false;
    if (is_json) {
      auto parsed = kchain::ParseJsonInput(req.body, "body");
      if (!parsed.ok()) return fail(parsed.status());
      body = std::move(*parsed);
      Status shape = CheckInvokeBody(body, &base64_output);
      if (!shape.ok()) return fail(shape);
    } else if (auto current = self->service_->Current(key)) {
      Status size = CheckInputSize(req.body.size(), current->spec(), key.name);
      if (!size.ok()) return fail(size);
    }

    auto run = Invocation::Begin(*self->service_, key, start);
    if (!run.ok()) return self->SendStatus(res, run.status());
    const FunctionSpec& spec = run->spec();
    t_request.start_type = StartTypeName(run->start_type()).data();

    size_t input_bytes = 0;
    Status status;
    if (binary) {
      input_bytes = req.body.size();
      status = CheckInputSize(input_bytes, spec, key.name);
      if (status.ok() && input_bytes != 0) {
        std::memcpy(run->input_buffer().data(), req.body.data(), input_bytes);
      }
    } else {
      std::vector<std::byte> input;
      if (body.contains("input")) {
        status = DecodeJsonTensor(body["input"], spec.input, spec.max_input_bytes, "input", &input);
      } else {
        auto decoded = Base64Decode(body["input_base64"].get<std::string>());
        status = decoded.status();
        if (decoded.ok()) input = std::move(*decoded);
        if (!status.ok()) status = status.WithContext("input_base64");
      }
      if (status.ok()) status = CheckInputSize(input.size(), spec, key.name);
      if (status.ok()) {
        input_bytes = input.size();
        if (input_bytes != 0) std::memcpy(run->input_buffer().data(), input.data(), input_bytes);
      }
    }
    if (!status.ok()) return self->SendStatus(res, run->Fail(status));
    status = run->Run(input_bytes);
    if (!status.ok()) return self->SendStatus(res, status);

    const auto output = run->output();
    const StartType start_type = run->start_type();
    const InvokeTimings& timings = run->timings();
    res.status = 200;
    res.set_header("X-Kchain-Start", std::string(StartTypeName(start_type)));
    res.set_header("X-Kchain-Version", std::to_string(run->version().version()));
    res.set_header("X-Kchain-Exec-Mode", std::string(kchain::ExecModeName(timings.run.mode)));
    if (binary) {
      res.set_content(reinterpret_cast<const char*>(output.data()), output.size(), kBinary);
    } else {
      json out = {{"function", key.name},
                  {"version", run->version().version()},
                  {"dtype", std::string(ElementTypeName(spec.output.dtype))},
                  {"shape", spec.output.shape.empty()
                                ? json::array({output.size() / ElementSize(spec.output.dtype)})
                                : json(spec.output.shape)},
                  {"start", std::string(StartTypeName(start_type))},
                  {"exec_mode", std::string(kchain::ExecModeName(timings.run.mode))}};
      if (base64_output) {
        out["output_base64"] = Base64Encode(output);
      } else {
        out["output"] = EncodeJsonTensor(output, spec.output.dtype);
      }
      run->MarkTotal();
      out["timings_us"] = TimingsJson(timings, start_type);
      SetUncompressedBody(res, Dump(out), kJson);
    }
    res.set_header("Server-Timing", ServerTimingHeader(timings, start_type));
    run->Succeed();
  }
};

HttpServer::HttpServer(Service* service, const Logger* logger, HttpOptions options)
    : service_(service),
      logger_(logger),
      options_(std::move(options)),
      scrub_([this](std::string m) { return Scrub(std::move(m)); }) {
  FramingLimits limits;
  limits.max_body_bytes = options_.max_body;
  server_ = std::make_unique<HttpTransport>(
      limits,
      [](int status, const std::string& reason, std::string_view target) {
        // Refused before routing: the error body in the shape of the API the path names.
        const StatusCode code = status == 413   ? StatusCode::kPayloadTooLarge
                                : status == 501 ? StatusCode::kUnimplemented
                                : status == 408 ? StatusCode::kDeadlineExceeded
                                                : StatusCode::kInvalidArgument;
        const Status refused(code, reason);
        const bool v2 = target == "/v2" || target.rfind("/v2/", 0) == 0;
        return v2 ? V2ErrorBody(refused) : ErrorBody(refused);
      },
      [this](int status, std::string_view method, std::string_view target) {
        service_->metrics().RecordHttpStatus(status);
        if (!logger_->enabled(LogLevel::kInfo)) return;
        char line[512];
        std::snprintf(line, sizeof line, "%.*s %.*s refused before routing status=%d",
                      static_cast<int>(std::min<size_t>(method.size(), 16)), method.data(),
                      static_cast<int>(std::min<size_t>(target.size(), 200)), target.data(),
                      status);
        logger_->Info(line);
      });
  httplib::Server& s = *server_;
  const int threads = std::max(1, options_.threads);
  s.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.set_tcp_nodelay(true);
  // cpp-httplib listens with a backlog of 5 (compiled into Debian's library): many clients
  // connecting at once (perf_analyzer opens 64 connections together) overflow it and some of
  // them fail. Remember the socket so Bind() can listen again with the system's maximum.
  s.set_socket_options([this](socket_t sock) {  // socket_t: cpp-httplib's, global
    HttpTransport::ListenSocketOptions(sock);   // no SO_REUSEPORT: a busy port fails the bind
    listen_socket_ = sock;
  });
  s.set_keep_alive_max_count(1000000);
  s.set_keep_alive_timeout(options_.keep_alive_timeout_s);
  s.set_read_timeout(options_.read_timeout_s, 0);
  s.set_payload_max_length(options_.max_body);

  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    t_request.start = Clock::now();
    t_request.function.clear();
    t_request.start_type = "-";
    t_request.counted = true;
    t_request.v2 = req.path == "/v2" || req.path.rfind("/v2/", 0) == 0;
    in_flight_.fetch_add(1);
    // A POST/PUT/PATCH with neither Content-Length nor chunked encoding would make the HTTP
    // library wait for the connection to close (60 s). Park and the v2 repository routes take
    // no body or an optional one (their handlers read it only when declared); the others must
    // declare theirs.
    if ((req.method == "POST" || req.method == "PUT" || req.method == "PATCH") &&
        !req.has_header("Content-Length") && !req.has_header("Transfer-Encoding") &&
        !BodyIsOptional(req.path)) {
      RejectBeforeBody(
          res, LengthRequiredError("send a Content-Length header (an empty body is Content-Length: "
                                   "0; with curl add -d '' or --data-binary @file)"));
      return httplib::Server::HandlerResponse::Handled;
    }
    // Probes need no key; everything else does, when keys are configured.
    if (req.path == "/healthz" || req.path == "/readyz" || req.path == "/v2/health/live" ||
        req.path == "/v2/health/ready" || req.path == "/openapi.yaml" ||
        req.path == "/v1/openapi.yaml") {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    if (options_.keys == nullptr) {
      t_request.caller = Caller{kDefaultTenant, /*admin=*/true};
      return httplib::Server::HandlerResponse::Unhandled;
    }
    auto caller = options_.keys->Authenticate(req.get_header_value("Authorization"));
    if (!caller.ok()) {
      RejectBeforeBody(res, caller.status());
      return httplib::Server::HandlerResponse::Handled;
    }
    t_request.caller = std::move(*caller);
    if (req.path == "/metrics" && !t_request.caller.admin) {
      // Metrics name every tenant's functions.
      RejectBeforeBody(res, UnauthenticatedError("/metrics needs an admin key"));
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  s.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    if (t_request.counted) in_flight_.fetch_sub(1);
    t_request.counted = false;
    service_->metrics().RecordHttpStatus(res.status);
    if (!logger_->enabled(LogLevel::kInfo)) return;
    char line[512];
    std::snprintf(line, sizeof line, "%s %s function=%s start=%s status=%d us=%.1f",
                  req.method.c_str(), req.path.substr(0, 200).c_str(),
                  t_request.function.empty() ? "-" : t_request.function.c_str(),
                  t_request.start_type, res.status, MicrosSince(t_request.start));
    logger_->Info(line);
  });
  // Errors httplib produces itself (no route, body too large, malformed request) get the same
  // JSON error body as ours; our own error responses already have one.
  s.set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        Status status;
        switch (res.status) {
          case 404:
            status = NotFoundError("no route for " + req.method + " " + req.path.substr(0, 200));
            break;
          case 405:
            status =
                MethodNotAllowedError(req.method + " is not allowed on " + req.path.substr(0, 200));
            break;
          case 413:
            // The HTTP library caps form-encoded bodies (what curl -d sends by default) at 8 KiB.
            status = PayloadTooLargeError(
                HasContentType(req, "application/x-www-form-urlencoded")
                    ? "form-encoded bodies are limited to 8 KiB: send the bytes as "
                      "application/octet-stream (curl: -H 'Content-Type: application/octet-stream')"
                    : "the request body is larger than the server's limit (" +
                          std::to_string(options_.max_body) + " bytes, --max-body)");
            break;
          default:
            status =
                InvalidArgumentError("malformed request (HTTP " + std::to_string(res.status) + ")");
        }
        const int code = res.status;
        res.set_content(t_request.v2 ? V2ErrorBody(status) : ErrorBody(status), kJson);
        res.status = code;
        return httplib::Server::HandlerResponse::Handled;
      }));
  s.set_exception_handler(
      [this](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        logger_->Error("handler threw: " + what);
        SendStatus(res, InternalError("the server failed to handle the request: " + what));
      });

  auto bind = [this](void (*fn)(HttpServer*, const httplib::Request&, httplib::Response&)) {
    return [this, fn](const httplib::Request& req, httplib::Response& res) { fn(this, req, res); };
  };
  const std::string fn_path = "/v1/functions/" + kName;
  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    Handlers::Json(res, 200, {{"status", "ok"}});
  });
  s.Get("/readyz", bind(&Handlers::Ready));
  // The API's description, as docs/openapi.yaml (no key needed: it holds no tenant's data).
  for (const char* path : {"/openapi.yaml", "/v1/openapi.yaml"}) {
    s.Get(path, [](const httplib::Request&, httplib::Response& res) {
      const std::string_view doc = OpenApiDocument();
      res.set_content(doc.data(), doc.size(), "application/yaml");
    });
  }
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(RenderMetrics(*service_), "text/plain; version=0.0.4");
  });
  s.Get("/v1", bind(&Handlers::Root));
  s.Get("/v1/functions", bind(&Handlers::List));
  s.Get("/v1/workers", bind(&Handlers::Workers));
  s.Get(fn_path, bind(&Handlers::Describe));
  s.Put(fn_path, bind(&Handlers::Deploy));
  s.Delete(fn_path, bind(&Handlers::Delete));
  s.Post(fn_path + "/invoke", bind(&Handlers::Invoke));
  // A content-reader handler: the (empty) body is never waited for.
  s.Post(fn_path + "/park",
         [this](const httplib::Request& req, httplib::Response& res,
                const httplib::ContentReader&) { Handlers::Park(this, req, res); });
  s.Post("/v1/uploads", bind(&Handlers::Upload));
  // Known paths with the wrong method: 405 rather than 404.
  std::vector<std::pair<std::string, std::string>> allowed = {
      {"/healthz", "GET"},           {"/readyz", "GET"},          {"/openapi.yaml", "GET"},
      {"/v1/openapi.yaml", "GET"},   {"/metrics", "GET"},         {"/v1", "GET"},
      {"/v1/functions", "GET"},      {"/v1/workers", "GET"},      {fn_path, "GET, PUT, DELETE"},
      {fn_path + "/invoke", "POST"}, {fn_path + "/park", "POST"}, {"/v1/uploads", "POST"}};
  // The v2 inference protocol's routes (gateway/http/v2_http.cc), and their allowed methods.
  RegisterV2Routes(&allowed);
  for (const auto& [path, methods] : allowed) {
    auto not_allowed = [this, methods = methods](const httplib::Request& req,
                                                 httplib::Response& res) {
      res.set_header("Allow", methods);
      SendStatus(
          res, MethodNotAllowedError(req.method + " is not allowed on " + req.path.substr(0, 200) +
                                     " (allowed: " + methods + ")"));
    };
    for (const char* method : {"GET", "PUT", "POST", "DELETE", "PATCH"}) {
      if (methods.find(method) != std::string::npos) continue;
      if (std::string(method) == "GET") s.Get(path, not_allowed);
      if (std::string(method) == "PUT") s.Put(path, not_allowed);
      if (std::string(method) == "POST") s.Post(path, not_allowed);
      if (std::string(method) == "DELETE") s.Delete(path, not_allowed);
      if (std::string(method) == "PATCH") s.Patch(path, not_allowed);
    }
  }
}

HttpServer::~HttpServer() { Stop(); }

// The tenant a request acts on: the caller's own, or, for an admin, the one named by
// ?tenant=. A non-admin naming another tenant gets the same 404 as for a missing function,
// so that names never leak across tenants.
bool HttpServer::ResolveTenant(const httplib::Request& req, httplib::Response& res,
                               std::string* tenant) const {
  const Caller& caller = t_request.caller;
  *tenant = caller.tenant;
  if (!req.has_param("tenant")) return true;
  const std::string wanted = req.get_param_value("tenant");
  if (Status valid = ValidateName(wanted, "tenant"); !valid.ok()) {
    SendStatus(res, valid);
    return false;
  }
  if (!caller.admin && wanted != caller.tenant) {
    SendStatus(res, req.matches.size() > 1
                        ? NotFoundError("no function '" + std::string(req.matches[1]) + "'")
                        : NotFoundError("no such tenant"));
    return false;
  }
  *tenant = wanted;
  return true;
}

// Resolves the function named in the path (the first capture); sends 400 for an invalid name.
bool HttpServer::ResolveKey(const httplib::Request& req, httplib::Response& res,
                            FunctionKey* key) const {
  if (!ResolveTenant(req, res, &key->tenant)) return false;
  key->name = req.matches[1];
  t_request.function = key->name;
  Status valid = ValidateName(key->name, "function");
  if (!valid.ok()) {
    SendStatus(res, valid);
    return false;
  }
  return true;
}

void HttpServer::RejectBeforeBody(httplib::Response& res, const Status& status) const {
  // The request's body, if any, was never read: the connection cannot carry another request.
  res.set_header("Connection", "close");
  HttpTransport::CloseAfterResponse();
  SendStatus(res, status);
}

std::string HttpServer::Scrub(std::string message) const {
  // Messages may quote stored files; callers need not learn where the data directory is.
  const std::string& data_dir = service_->data_dir();
  for (size_t at = message.find(data_dir); !data_dir.empty() && at != std::string::npos;
       at = message.find(data_dir, at)) {
    message.replace(at, data_dir.size() + (message.compare(at + data_dir.size(), 1, "/") == 0), "");
  }
  return message;
}

void HttpServer::SendStatus(httplib::Response& res, const Status& status) const {
  res.status = HttpStatusFor(status.code());
  if (status.code() == StatusCode::kResourceExhausted) res.set_header("Retry-After", "1");
  if (status.code() == StatusCode::kUnauthenticated) {
    res.set_header("WWW-Authenticate", "Bearer realm=\"kchain\"");
  }
  const Status scrubbed(status.code(), Scrub(status.message()));
  res.set_content(t_request.v2 ? V2ErrorBody(scrubbed) : ErrorBody(scrubbed), kJson);
}

StatusOr<int> HttpServer::Bind() {
  if (options_.port == 0) {
    port_ = server_->bind_to_any_port(options_.host);
    if (port_ < 0) return UnavailableError("cannot listen on " + options_.host);
  } else {
    if (!server_->bind_to_port(options_.host, options_.port)) {
      return UnavailableError("cannot listen on " + options_.host + ":" +
                              std::to_string(options_.port) +
                              " (in use, or not an address of this machine)");
    }
    port_ = options_.port;
  }
  // Listening again on a listening socket only changes its backlog (see the constructor).
  if (listen_socket_ >= 0 && ::listen(listen_socket_, SOMAXCONN) != 0) {
    return UnavailableError(std::string("cannot deepen the listen backlog: ") +
                            std::strerror(errno));
  }
  return port_;
}

void HttpServer::Serve() { server_->listen_after_bind(); }

void HttpServer::Stop() {
  if (server_->is_running()) server_->stop();
}

}  // namespace kchain::gateway
