// A real gateway for tests: the service and the HTTP server on an ephemeral loopback port,
// served from a thread, with a fresh data directory; and an HTTP client for it.
#ifndef KCHAIN_TESTS_GATEWAY_GATEWAY_TEST_UTIL_H_
#define KCHAIN_TESTS_GATEWAY_GATEWAY_TEST_UTIL_H_

#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "gateway/core/files.h"
#include "gateway/core/service.h"
#include "gateway/exec/process_executor.h"
#include "gateway/http/http_server.h"
#include "gateway/http/tensor_codec.h"
#include "kchain/manifest.h"
#include "test_util.h"

namespace kchain::gateway::testing {

using nlohmann::json;

inline std::string FreshDir(const std::string& tag) {
  static int counter = 0;
  const auto dir =
      std::filesystem::temp_directory_path() /
      ("kchain_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

inline std::string ReadFile(const std::string& path) {
  auto bytes = kchain::ReadFileToString(path);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.ok() ? *bytes : std::string();
}

struct TestGatewayOptions {
  SchedulerOptions scheduler;
  std::string data_dir;  // empty: a fresh one
  uint64_t max_body = uint64_t{64} << 20;
  DeviceKind device_kind = DeviceKind::kHost;
  // "none" or "process"; empty: $KCHAIN_TEST_ISOLATION, else "none". CTest runs the gateway
  // suites under both.
  std::string isolation;
  const ApiKeys* keys = nullptr;
  int prestarted_workers = 2;
  uint64_t worker_memory_limit = uint64_t{2} << 30;
  int request_spin_us = 0;        // workers spin this long for the next run
  int reply_spin_us = 200;        // the invoking thread spins this long for a worker's reply
  bool spin_yield = false;        // both spins call sched_yield() instead of the pause hint
  std::string gpu_wait = "auto";  // how workers wait for the GPU (ParseGpuWait)
  int device_connections = 0;     // CUDA_DEVICE_MAX_CONNECTIONS in workers; 0: CUDA's own
  WorkerScope worker_scope = WorkerScope::kTenant;
  int workers_per_tenant = 1;
  int max_workers = 256;
  std::chrono::milliseconds idle_worker_ttl{600000};
  uint64_t cpu_seconds_budget = 3600;
};

inline std::string IsolationFromEnvironment() {
  const char* env = std::getenv("KCHAIN_TEST_ISOLATION");
  return env != nullptr && *env != '\0' ? env : "none";
}

class TestGateway {
 public:
  explicit TestGateway(SchedulerOptions scheduler = {}, std::string data_dir = "",
                       uint64_t max_body = uint64_t{64} << 20,
                       DeviceKind device_kind = DeviceKind::kHost)
      : TestGateway(MakeOptions(scheduler, std::move(data_dir), max_body, device_kind)) {}

  explicit TestGateway(TestGatewayOptions options) : logger_(LogLevel::kWarning) {
    data_dir_ = options.data_dir.empty() ? FreshDir("gateway") : options.data_dir;
    isolation_ = options.isolation.empty() ? IsolationFromEnvironment() : options.isolation;
    std::unique_ptr<Executor> executor;
    if (isolation_ == "process") {
      ProcessExecutorOptions process;
      process.launch.binary = KCHAIN_WORKER_BINARY;
      process.launch.device = std::string(DeviceKindName(options.device_kind));
      process.launch.workdir_root = data_dir_ + "/workers";
      process.launch.address_space_headroom = 4 * options.worker_memory_limit + (uint64_t{1} << 30);
      process.prestarted_workers = options.prestarted_workers;
      process.memory_limit_bytes = options.worker_memory_limit;
      process.run_timeout = options.scheduler.invoke_timeout;
      process.request_spin = std::chrono::microseconds(options.request_spin_us);
      process.reply_spin = std::chrono::microseconds(options.reply_spin_us);
      process.spin_yield = options.spin_yield;
      process.launch.gpu_wait = options.gpu_wait;
      process.launch.device_connections = options.device_connections;
      process.scope = options.worker_scope;
      process.workers_per_scope = options.workers_per_tenant;
      process.max_workers = options.max_workers;
      process.idle_worker_ttl = options.idle_worker_ttl;
      process.cpu_seconds_budget = options.cpu_seconds_budget;
      auto made = MakeProcessExecutor(process);
      EXPECT_TRUE(made.ok()) << made.status();
      executor = std::move(*made);
    } else {
      auto device = Device::Open(options.device_kind);
      EXPECT_TRUE(device.ok()) << device.status();
      executor = MakeInProcessExecutor(*device, kchain::InstanceOptions{});
    }
    ServiceOptions service_options;
    service_options.data_dir = data_dir_;
    service_options.scheduler = options.scheduler;
    auto service = Service::Create(service_options, std::move(executor), [](const std::string&) {});
    EXPECT_TRUE(service.ok()) << service.status();
    service_ = std::move(*service);
    HttpOptions http;
    http.port = 0;
    http.threads = 32;
    // As long as the clients' read timeout: a sanitized build on a loaded machine can spend
    // more than the default 5 s checking one response before it sends the next request, and
    // a connection the server closed meanwhile fails that request.
    http.keep_alive_timeout_s = 60;
    http.max_body = options.max_body;
    http.keys = options.keys;
    server_ = std::make_unique<HttpServer>(service_.get(), &logger_, http);
    auto port = server_->Bind();
    EXPECT_TRUE(port.ok()) << port.status();
    port_ = *port;
    thread_ = std::thread([this] { server_->Serve(); });
  }

  ~TestGateway() { Stop(); }

  static TestGatewayOptions MakeOptions(SchedulerOptions scheduler, std::string data_dir,
                                        uint64_t max_body, DeviceKind device_kind) {
    TestGatewayOptions options;
    options.scheduler = scheduler;
    options.data_dir = std::move(data_dir);
    options.max_body = max_body;
    options.device_kind = device_kind;
    return options;
  }

  void Stop() {
    if (server_ == nullptr) return;
    service_->BeginShutdown();
    server_->Stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
    service_.reset();
  }

  // A client; with `key`, every request carries "Authorization: Bearer <key>".
  std::unique_ptr<httplib::Client> Client(const std::string& key = "") const {
    auto client = std::make_unique<httplib::Client>("127.0.0.1", port_);
    client->set_read_timeout(60, 0);
    client->set_keep_alive(true);
    client->set_tcp_nodelay(true);
    if (!key.empty()) client->set_bearer_token_auth(key);
    return client;
  }

  Service& service() { return *service_; }
  HttpServer& server() { return *server_; }
  const std::string& data_dir() const { return data_dir_; }
  const std::string& isolation() const { return isolation_; }
  int port() const { return port_; }

 private:
  Logger logger_;
  std::string data_dir_;
  std::string isolation_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
  int port_ = 0;
};

// Deploys through the multipart API. `constants` may be empty.
inline httplib::Result DeployMultipart(httplib::Client& client, const std::string& name,
                                       const std::string& manifest, const std::string& library,
                                       const std::string& constants) {
  httplib::MultipartFormDataItems items = {
      {"manifest", manifest, "manifest.json", "application/json"},
      {"library", library, "kernel.so", "application/octet-stream"}};
  if (!constants.empty()) {
    items.push_back({"constants", constants, "constants.bin", "application/octet-stream"});
  }
  return client.Put(("/v1/functions/" + name).c_str(), items);
}

// Deploys a built sample (its `target` library) under `name`.
inline httplib::Result DeploySample(httplib::Client& client, const std::string& sample,
                                    const std::string& name, const std::string& target = "host") {
  auto manifest = kchain::LoadManifestFile(kchain::testing::SampleFile(sample, "manifest.json"));
  EXPECT_TRUE(manifest.ok()) << manifest.status();
  return DeployMultipart(client, name,
                         ReadFile(kchain::testing::SampleFile(sample, "manifest.json")),
                         ReadFile(manifest->libraries.at(target)), ReadFile(manifest->constants));
}

// A manifest for the host test kernels: float32 buffers of `floats` elements.
inline std::string TestManifest(const std::vector<std::string>& kernels, size_t floats,
                                size_t constants = 0) {
  json chain = json::array();
  for (const auto& k : kernels) chain.push_back({{"kernel", k}, {"grid", 1}, {"block", 32}});
  json m = {{"chain", chain},
            {"input", {{"dtype", "float32"}, {"shape", {floats}}}},
            {"output", {{"dtype", "float32"}, {"shape", {floats}}}},
            {"tmp_bytes", floats * 4},
            {"constant_bytes", constants * 4}};
  return m.dump();
}

inline std::string TestLibraryBytes(const std::string& name = "test_kernels_host") {
  return ReadFile(kchain::testing::TestLibrary(name));
}

// Deploys `name` running sleep_then_copy: the first uint32 of the input is how many
// milliseconds each invocation takes.
inline httplib::Result DeploySlowFunction(httplib::Client& client, const std::string& name) {
  return DeployMultipart(client, name, TestManifest({"sleep_then_copy"}, 4), TestLibraryBytes(),
                         "");
}

inline httplib::Result InvokeBinary(httplib::Client& client, const std::string& name,
                                    const std::string& body) {
  return client.Post(("/v1/functions/" + name + "/invoke").c_str(), body,
                     "application/octet-stream");
}

inline httplib::Result InvokeJson(httplib::Client& client, const std::string& name,
                                  const json& body) {
  return client.Post(("/v1/functions/" + name + "/invoke").c_str(), body.dump(),
                     "application/json");
}

template <typename T>
std::string BytesOf(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

template <typename T>
std::vector<T> VectorOf(const std::string& bytes) {
  std::vector<T> v(bytes.size() / sizeof(T));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
  return v;
}

// The error code of a JSON error response, or "" when there is none (the v2 protocol's error
// body, {"error": "<message>"}, has no code).
inline std::string ErrorCode(const httplib::Result& res) {
  if (!res) return "<no response>";
  auto body = json::parse(res->body, nullptr, false);
  if (body.is_discarded() || !body.contains("error") || !body["error"].is_object()) return "";
  return body["error"].value("code", "");
}

// The message of a v1 error body ({"error": {"code", "message"}}) or a v2 one.
inline std::string ErrorMessage(const httplib::Result& res) {
  if (!res) return "<no response: " + httplib::to_string(res.error()) + ">";
  auto body = json::parse(res->body, nullptr, false);
  if (body.is_discarded() || !body.contains("error")) return res->body.substr(0, 300);
  if (body["error"].is_string()) return body["error"];
  return body["error"].value("message", "");
}

}  // namespace kchain::gateway::testing

#endif  // KCHAIN_TESTS_GATEWAY_GATEWAY_TEST_UTIL_H_
