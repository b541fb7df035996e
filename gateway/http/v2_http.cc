// The /v2 routes: the KServe v2 / Open Inference Protocol's REST binding (health, server and
// model metadata, model configuration and statistics, inference with the binary tensor data
// extension, the model repository extension). Protocol documents and the request and response
// formats are in v2_protocol.cc; inference runs through Invocation, the path /v1 invoke takes.
// Authentication, tenants, the access log and in-flight accounting are the server's (the
// pre-routing handler in http_server.cc); errors are rendered as {"error": "..."} by
// SendStatus on /v2 paths, with the HTTP status of the one mapping.
#include <cstring>

#include "gateway/core/invocation.h"
#include "gateway/http/http_context.h"
#include "gateway/http/http_errors.h"
#include "gateway/http/http_server.h"
#include "gateway/http/http_transport.h"
#include "gateway/http/v2_protocol.h"
#include "runtime/json_input.h"

namespace kchain::gateway {
namespace {

using nlohmann::json;

constexpr const char* kJson = "application/json";
constexpr const char* kBinary = "application/octet-stream";
// A model, with an optional version: /v2/models/{name}[/versions/{version}].
const std::string kModel = "/v2/models/([^/]+)(?:/versions/([^/]+))?";

void SendJson(httplib::Response& res, const json& body) {
  res.status = 200;
  res.set_content(Dump(body), kJson);
}

// The version named in the path, if any.
std::string_view PathVersion(const httplib::Request& req) {
  if (req.matches.size() < 3 || !req.matches[2].matched) return {};
  return {req.matches[2].first, req.matches[2].second};
}

// The model's version must be the current one when the path names one. kNotFound otherwise.
Status CheckVersion(std::string_view wanted, const std::string& name, uint64_t current) {
  if (wanted.empty() || wanted == std::to_string(current)) return Status();
  return NotFoundError("model '" + name + "' has no version '" + std::string(wanted.substr(0, 40)) +
                       "' (its version is " + std::to_string(current) + ")");
}

Status UnknownModel(const std::string& name) {
  return NotFoundError("unknown model '" + name + "'");
}

// An optional JSON object body (load, unload, index); an empty body is {}.
StatusOr<json> OptionalObjectBody(const std::string& text) {
  if (text.empty()) return json::object();
  auto body = kchain::ParseJsonInput(text, "body");
  if (!body.ok()) return body.status();
  if (!body->is_object()) return InvalidArgumentError("the body must be empty or a JSON object");
  return body;
}

}  // namespace

struct HttpServer::V2Handlers {
  // The function a model path names, described; sends 400 (bad name), 404 (unknown model or
  // version) or 503 (the function failed to load) and returns false otherwise.
  static bool Describe(HttpServer* self, const httplib::Request& req, httplib::Response& res,
                       FunctionInfo* info, bool allow_load_failed = false) {
    FunctionKey key;
    if (!self->ResolveKey(req, res, &key)) return false;
    auto described = self->service_->Describe(key);
    if (!described.ok()) {
      self->SendStatus(res, described.status().code() == StatusCode::kNotFound
                                ? UnknownModel(key.name)
                                : described.status());
      return false;
    }
    if (Status version = CheckVersion(PathVersion(req), key.name, described->version);
        !version.ok()) {
      self->SendStatus(res, version);
      return false;
    }
    if (!described->load_error.empty() && !allow_load_failed) {
      self->SendStatus(res, UnavailableError("model '" + key.name + "' failed to load: " +
                                             described->load_error + " (deploy it again)"));
      return false;
    }
    *info = std::move(*described);
    return true;
  }

  static v2::Model ModelOf(const FunctionInfo& info) {
    return v2::Model{info.key.name, info.version, &info.manifest};
  }

  static void Live(HttpServer*, const httplib::Request&, httplib::Response& res) {
    res.status = 200;  // the protocol's answer is the status; the body is empty
  }

  // Ready: 200; not ready: 400 with the reason, as Triton answers (the protocol asks for a 4xx).
  static void Ready(HttpServer* self, const httplib::Request&, httplib::Response& res) {
    std::string why;
    if (self->service_->Ready(&why)) {
      res.status = 200;
      return;
    }
    res.status = 400;
    res.set_content(V2ErrorBody(UnavailableError(why)), kJson);
  }

  static void Server(HttpServer*, const httplib::Request&, httplib::Response& res) {
    SendJson(res, v2::ServerMetadata());
  }

  static void Metadata(HttpServer* self, const httplib::Request& req, httplib::Response& res) {
    FunctionInfo info;
    if (!Describe(self, req, res, &info)) return;
    SendJson(res, v2::ModelMetadata(ModelOf(info)));
  }

  static void Config(HttpServer* self, const httplib::Request& req, httplib::Response& res) {
    FunctionInfo info;
    if (!Describe(self, req, res, &info)) return;
    SendJson(res, v2::ModelConfig(ModelOf(info), info.manifest.description,
                                  self->service_->options().scheduler.max_instances_per_function,
                                  self->service_->executor().device_kind()));
  }

  // 200 when the model can run requests; 400 with the reason when it cannot (unloaded, failed
  // to load, server shutting down); 404 for an unknown model or version.
  static void ModelReady(HttpServer* self, const httplib::Request& req, httplib::Response& res) {
    FunctionInfo info;
    if (!Describe(self, req, res, &info, /*allow_load_failed=*/true)) return;
    std::string why;
    if (!info.load_error.empty()) {
      why = "model '" + info.key.name + "' failed to load: " + self->Scrub(info.load_error);
    } else if (info.pool.unloaded) {
      why = "model '" + info.key.name + "' is unloaded";
    } else if (!self->service_->Ready(&why)) {
      why = "model '" + info.key.name + "' is not ready: " + why;
    } else {
      res.status = 200;
      return;
    }
    res.status = 400;
    res.set_content(V2ErrorBody(UnavailableError(why)), kJson);
  }

  static json StatisticsOf(HttpServer* self, const FunctionInfo& info) {
    auto metrics = self->service_->MetricsFor(info.key);
    return metrics ? v2::ModelStatistics(ModelOf(info), *metrics) : json();
  }

  static void Stats(HttpServer* self, const httplib::Request& req, httplib::Response& res) {
    FunctionInfo info;
    if (!Describe(self, req, res, &info, /*allow_load_failed=*/true)) return;
    json stats = json::array();
    if (json one = StatisticsOf(self, info); !one.is_null()) stats.push_back(std::move(one));
    SendJson(res, {{"model_stats", stats}});
  }

  static void AllStats(HttpServer* self, const httplib::Request& req, httplib::Response& res) {
    std::string tenant;
    if (!self->ResolveTenant(req, res, &tenant)) return;
    json stats = json::array();
    for (const auto& info : self->service_->List(tenant)) {
      if (json one = StatisticsOf(self, info); !one.is_null()) stats.push_back(std::move(one));
    }
    SendJson(res, {{"model_stats", stats}});
  }

  // The caller's tenant's functions: {"name", "version", "state": READY | UNAVAILABLE,
  // "reason"}. With {"ready": true}, the ready ones only.
  static void Index(HttpServer* self, const httplib::Request& req, httplib::Response& res,
                    const std::string& text) {
    std::string tenant;
    if (!self->ResolveTenant(req, res, &tenant)) return;
    auto body = OptionalObjectBody(text);
    if (!body.ok()) return self->SendStatus(res, body.status());
    bool ready_only = false;
    for (const auto& item : body->items()) {
      if (item.key() != "ready") {
        return self->SendStatus(
            res, InvalidArgumentError("unknown key '" + item.key() + "' (expected ready)"));
      }
      if (!item.value().is_boolean()) {
        return self->SendStatus(res, InvalidArgumentError("ready must be a boolean"));
      }
      ready_only = item.value().get<bool>();
    }
    json models = json::array();
    for (const auto& info : self->service_->List(tenant)) {
      std::string reason;
      if (!info.load_error.empty()) {
        reason = "failed to load: " + self->Scrub(info.load_error);
      } else if (info.pool.unloaded) {
        reason = "unloaded";
      }
      if (ready_only && !reason.empty()) continue;
      models.push_back({{"name", info.key.name},
                        {"version", std::to_string(info.version)},
                        {"state", reason.empty() ? "READY" : "UNAVAILABLE"},
                        {"reason", reason}});
    }
    SendJson(res, models);
  }

  static void Load(HttpServer* self, const httplib::Request& req, httplib::Response& res,
                   const std::string& text) {
    FunctionKey key;
    if (!self->ResolveKey(req, res, &key)) return;
    auto body = OptionalObjectBody(text);
    if (!body.ok()) return self->SendStatus(res, body.status());
    if (body->contains("parameters") && !(*body)["parameters"].empty()) {
      return self->SendStatus(
          res, InvalidArgumentError("kchain loads deployed functions as they are: load "
                                    "parameters (a config, files) are not supported; deploy "
                                    "with PUT /v1/functions/" +
                                    key.name));
    }
    Status status = self->service_->Load(key);
    if (status.code() == StatusCode::kNotFound) status = UnknownModel(key.name);
    if (!status.ok()) return self->SendStatus(res, status);
    res.status = 200;
  }

  static void Unload(HttpServer* self, const httplib::Request& req, httplib::Response& res,
                     const std::string& text) {
    FunctionKey key;
    if (!self->ResolveKey(req, res, &key)) return;
    auto body = OptionalObjectBody(text);
    if (!body.ok()) return self->SendStatus(res, body.status());
    // parameters.unload_dependents has nothing to act on: functions have no dependents.
    Status status = self->service_->Unload(key);
    if (status.code() == StatusCode::kNotFound) status = UnknownModel(key.name);
    if (!status.ok()) return self->SendStatus(res, status);
    res.status = 200;
  }

  static void Infer(HttpServer* self, const httplib::Request& req, httplib::Response& res) {
    const auto start = HttpClock::now();
    FunctionKey key;
    if (!self->ResolveKey(req, res, &key)) return;
    auto fail = [&](const Status& status) {
      RecordInvokeFailure(*self->service_, key, status);
      self->SendStatus(res, status);
    };
    std::optional<size_t> header_length;
    if (req.has_header(v2::kHeaderLengthHeader.data())) {
      auto parsed = v2::ParseHeaderLength(req.get_header_value(v2::kHeaderLengthHeader.data()));
      if (!parsed.ok()) return fail(parsed.status());
      header_length = *parsed;
    }
    const std::string_view wanted_version = PathVersion(req);

    // The request is parsed and checked against the current version before an instance is
    // taken, so that no instance waits on parsing and a request that cannot run starts none.
    // (No current version: unknown, or failed to load; Acquire below says which.)
    auto current = self->service_->Current(key);
    v2::Model model{key.name, 0, nullptr};
    StatusOr<v2::InferRequest> request = InvalidArgumentError("not parsed");
    if (current != nullptr) {
      if (Status version = CheckVersion(wanted_version, key.name, current->version());
          !version.ok()) {
        return fail(version);
      }
      model = v2::Model{key.name, current->version(), &current->manifest()};
      request = v2::ParseInferRequest(req.body, header_length, model);
      if (!request.ok()) return fail(request.status());
    }

    auto run = Invocation::Begin(*self->service_, key, start);
    if (!run.ok()) {
      const Status& status = run.status();
      return self->SendStatus(
          res, status.code() == StatusCode::kNotFound ? UnknownModel(key.name) : status);
    }
    t_request.start_type = StartTypeName(run->start_type()).data();
    if (run->version().version() != model.version) {
      // Another version became current meanwhile: the request must suit the one that runs.
      if (Status version = CheckVersion(wanted_version, key.name, run->version().version());
          !version.ok()) {
        return self->SendStatus(res, run->Fail(version));
      }
      model = v2::Model{key.name, run->version().version(), &run->version().manifest()};
      request = v2::ParseInferRequest(req.body, header_length, model);
      if (!request.ok()) return self->SendStatus(res, run->Fail(request.status()));
    }

    const auto input = request->input(req.body);
    if (!input.empty()) std::memcpy(run->input_buffer().data(), input.data(), input.size());
    if (Status status = run->Run(input.size()); !status.ok()) {
      return self->SendStatus(res, status);
    }

    v2::InferResponse response = v2::BuildInferResponse(*request, model, run->output());
    run->MarkTotal();
    const InvokeTimings& timings = run->timings();
    res.status = 200;
    SetUncompressedBody(res, std::move(response.body), response.binary ? kBinary : kJson);
    if (response.binary) {
      res.set_header(v2::kHeaderLengthHeader.data(), std::to_string(response.header_length));
    }
    res.set_header("X-Kchain-Start", std::string(StartTypeName(run->start_type())));
    res.set_header("X-Kchain-Version", std::to_string(model.version));
    res.set_header("X-Kchain-Exec-Mode", std::string(kchain::ExecModeName(timings.run.mode)));
    res.set_header("Server-Timing", ServerTimingHeader(timings, run->start_type()));
    run->Succeed();
  }
};

void HttpServer::RegisterV2Routes(std::vector<std::pair<std::string, std::string>>* allowed) {
  httplib::Server& s = *server_;
  auto bind = [this](void (*fn)(HttpServer*, const httplib::Request&, httplib::Response&)) {
    return [this, fn](const httplib::Request& req, httplib::Response& res) { fn(this, req, res); };
  };
  s.Get("/v2/health/live", bind(&V2Handlers::Live));
  s.Get("/v2/health/ready", bind(&V2Handlers::Ready));
  s.Get("/v2", bind(&V2Handlers::Server));
  // Before kModel, which "/v2/models/stats" would match too.
  s.Get("/v2/models/stats", bind(&V2Handlers::AllStats));
  s.Get(kModel, bind(&V2Handlers::Metadata));
  s.Get(kModel + "/ready", bind(&V2Handlers::ModelReady));
  s.Get(kModel + "/config", bind(&V2Handlers::Config));
  s.Get(kModel + "/stats", bind(&V2Handlers::Stats));
  s.Post(kModel + "/infer", bind(&V2Handlers::Infer));
  // The repository's bodies are optional, and tritonclient sends its empty ones without a
  // Content-Length: content-reader handlers read a body only when one is declared.
  auto optional_body = [this](void (*fn)(HttpServer*, const httplib::Request&, httplib::Response&,
                                         const std::string&)) {
    return [this, fn](const httplib::Request& req, httplib::Response& res,
                      const httplib::ContentReader& reader) {
      std::string text;
      if (req.has_header("Content-Length") || req.has_header("Transfer-Encoding")) {
        reader([&text](const char* data, size_t n) {
          text.append(data, n);
          return true;
        });
      }
      fn(this, req, res, text);
    };
  };
  s.Post("/v2/repository/index", optional_body(&V2Handlers::Index));
  s.Post("/v2/repository/models/([^/]+)/load", optional_body(&V2Handlers::Load));
  s.Post("/v2/repository/models/([^/]+)/unload", optional_body(&V2Handlers::Unload));
  for (const char* path : {"/v2/health/live", "/v2/health/ready", "/v2", "/v2/models/stats"}) {
    allowed->emplace_back(path, "GET");
  }
  for (const char* suffix : {"", "/ready", "/config", "/stats"}) {
    allowed->emplace_back(kModel + suffix, "GET");
  }
  allowed->emplace_back(kModel + "/infer", "POST");
  allowed->emplace_back("/v2/repository/index", "POST");
  allowed->emplace_back("/v2/repository/models/([^/]+)/load", "POST");
  allowed->emplace_back("/v2/repository/models/([^/]+)/unload", "POST");
}

}  // namespace kchain::gateway
