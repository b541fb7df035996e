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

#include "gateway/files.h"
#include "gateway/http_server.h"
#include "gateway/service.h"
#include "gateway/tensor_codec.h"
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

class TestGateway {
 public:
  explicit TestGateway(SchedulerOptions scheduler = {}, std::string data_dir = "",
                       uint64_t max_body = uint64_t{64} << 20,
                       DeviceKind device_kind = DeviceKind::kHost)
      : logger_(LogLevel::kWarning) {
    data_dir_ = data_dir.empty() ? FreshDir("gateway") : data_dir;
    auto device = Device::Open(device_kind);
    EXPECT_TRUE(device.ok());
    ServiceOptions options;
    options.data_dir = data_dir_;
    options.scheduler = scheduler;
    kchain::InstanceOptions instance_options;
    auto service = Service::Create(options, MakeInProcessExecutor(*device, instance_options),
                                   [](const std::string&) {});
    EXPECT_TRUE(service.ok()) << service.status();
    service_ = std::move(*service);
    HttpOptions http;
    http.port = 0;
    http.threads = 32;
    http.max_body = max_body;
    server_ = std::make_unique<HttpServer>(service_.get(), &logger_, http);
    auto port = server_->Bind();
    EXPECT_TRUE(port.ok()) << port.status();
    port_ = *port;
    thread_ = std::thread([this] { server_->Serve(); });
  }

  ~TestGateway() { Stop(); }

  void Stop() {
    if (server_ == nullptr) return;
    service_->BeginShutdown();
    server_->Stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
    service_.reset();
  }

  std::unique_ptr<httplib::Client> Client() const {
    auto client = std::make_unique<httplib::Client>("127.0.0.1", port_);
    client->set_read_timeout(60, 0);
    client->set_keep_alive(true);
    client->set_tcp_nodelay(true);
    return client;
  }

  Service& service() { return *service_; }
  HttpServer& server() { return *server_; }
  const std::string& data_dir() const { return data_dir_; }
  int port() const { return port_; }

 private:
  Logger logger_;
  std::string data_dir_;
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

// The error code of a JSON error response, or "" when there is none.
inline std::string ErrorCode(const httplib::Result& res) {
  if (!res) return "<no response>";
  auto body = json::parse(res->body, nullptr, false);
  if (body.is_discarded() || !body.contains("error")) return "";
  return body["error"].value("code", "");
}

inline std::string ErrorMessage(const httplib::Result& res) {
  if (!res) return "<no response: " + httplib::to_string(res.error()) + ">";
  auto body = json::parse(res->body, nullptr, false);
  if (body.is_discarded() || !body.contains("error")) return res->body.substr(0, 300);
  return body["error"].value("message", "");
}

}  // namespace kchain::gateway::testing

#endif  // KCHAIN_TESTS_GATEWAY_GATEWAY_TEST_UTIL_H_
