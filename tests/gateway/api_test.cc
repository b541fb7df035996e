// The REST API against a real gateway on a loopback port (host backend): deploy and invoke
// both samples over JSON and binary, list/describe/delete, uploads, persistence across a
// restart, health, metrics, and graceful shutdown.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cmath>
#include <fstream>
#include <future>
#include <random>

#include "gateway_test_util.h"

namespace kchain::gateway::testing {
namespace {

using kchain::testing::SampleFile;

std::vector<float> FirstImage() {
  const auto all = VectorOf<float>(ReadFile(SampleFile("mnist_cnn", "heldout_images.bin")));
  return std::vector<float>(all.begin(), all.begin() + 784);
}

TEST(GatewayApi, HealthReadyAndServerInfo) {
  TestGateway gw;
  auto client = gw.Client();
  auto health = client->Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(json::parse(health->body)["status"], "ok");
  auto ready = client->Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  auto info = client->Get("/v1");
  ASSERT_TRUE(info);
  EXPECT_EQ(json::parse(info->body)["device"]["kind"], "host");
}

TEST(GatewayApi, DeployAndInvokeTheCnnOverBinaryAndJson) {
  TestGateway gw;
  auto client = gw.Client();
  auto deployed = DeploySample(*client, "mnist_cnn", "mnist_cnn");
  ASSERT_TRUE(deployed);
  ASSERT_EQ(deployed->status, 201) << deployed->body;
  const json info = json::parse(deployed->body);
  EXPECT_EQ(info["version"], 1);
  EXPECT_EQ(info["state"], "ready");
  EXPECT_EQ(info["manifest"]["chain"].size(), 3u);

  const auto image = FirstImage();
  auto binary = InvokeBinary(*client, "mnist_cnn", BytesOf(image));
  ASSERT_TRUE(binary);
  ASSERT_EQ(binary->status, 200) << binary->body;
  EXPECT_EQ(binary->get_header_value("Content-Type"), "application/octet-stream");
  EXPECT_EQ(binary->get_header_value("X-Kchain-Start"), "cold");
  EXPECT_EQ(binary->get_header_value("X-Kchain-Version"), "1");
  EXPECT_NE(binary->get_header_value("Server-Timing").find("run;dur="), std::string::npos);
  const auto logits = VectorOf<float>(binary->body);
  ASSERT_EQ(logits.size(), 10u);
  EXPECT_NEAR(logits[0], 10.573035f, 1e-4);

  auto as_json = InvokeJson(*client, "mnist_cnn", {{"input", image}});
  ASSERT_TRUE(as_json);
  ASSERT_EQ(as_json->status, 200) << as_json->body;
  const json out = json::parse(as_json->body);
  EXPECT_EQ(out["start"], "hot");
  EXPECT_EQ(out["dtype"], "float32");
  EXPECT_EQ(out["shape"], json::array({10}));
  ASSERT_EQ(out["output"].size(), 10u);
  for (int k = 0; k < 10; ++k) EXPECT_FLOAT_EQ(out["output"][k].get<float>(), logits[k]) << k;
  EXPECT_TRUE(out["timings_us"].contains("queue"));
  EXPECT_TRUE(out["timings_us"].contains("run"));
  EXPECT_GE(out["timings_us"]["total"].get<double>(), out["timings_us"]["run"].get<double>());

  // The same image as nested 28x28 arrays, and as base64 with base64 output.
  json nested = json::array();
  for (int y = 0; y < 28; ++y) {
    nested.push_back(std::vector<float>(image.begin() + y * 28, image.begin() + (y + 1) * 28));
  }
  auto nested_res = InvokeJson(*client, "mnist_cnn", {{"input", nested}});
  ASSERT_TRUE(nested_res);
  ASSERT_EQ(nested_res->status, 200) << nested_res->body;
  EXPECT_EQ(json::parse(nested_res->body)["output"], out["output"]);
  auto b64 = InvokeJson(*client, "mnist_cnn",
                        {{"input_base64", Base64Encode(std::as_bytes(std::span(image)))},
                         {"output_format", "base64"}});
  ASSERT_TRUE(b64);
  ASSERT_EQ(b64->status, 200) << b64->body;
  auto decoded = Base64Decode(json::parse(b64->body)["output_base64"].get<std::string>());
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(
      VectorOf<float>(std::string(reinterpret_cast<const char*>(decoded->data()), decoded->size())),
      logits);
}

TEST(GatewayApi, CnnClassifiesTheHeldOutDigitsOverHttp) {
  TestGateway gw;
  auto client = gw.Client();
  ASSERT_EQ(DeploySample(*client, "mnist_cnn", "cnn")->status, 201);
  const auto images = VectorOf<float>(ReadFile(SampleFile("mnist_cnn", "heldout_images.bin")));
  const std::string labels = ReadFile(SampleFile("mnist_cnn", "heldout_labels.bin"));
  const auto report = json::parse(ReadFile(SampleFile("mnist_cnn", "report.json")));
  size_t correct = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    auto res =
        InvokeBinary(*client, "cnn",
                     std::string(reinterpret_cast<const char*>(images.data() + i * 784), 784 * 4));
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200);
    const auto logits = VectorOf<float>(res->body);
    if (std::max_element(logits.begin(), logits.end()) - logits.begin() ==
        static_cast<uint8_t>(labels[i])) {
      ++correct;
    }
  }
  EXPECT_EQ(correct, report["heldout_correct"].get<size_t>());
}

TEST(GatewayApi, DeployAndInvokeVecaddOverBinaryAndJson) {
  TestGateway gw;
  auto client = gw.Client();
  ASSERT_EQ(DeploySample(*client, "vecadd", "vecadd")->status, 201);
  const auto constants = VectorOf<float>(ReadFile(SampleFile("vecadd", "constants.bin")));
  std::vector<float> input(1000000);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-100, 100);
  for (auto& v : input) v = dist(rng);
  auto res = InvokeBinary(*client, "vecadd", BytesOf(input));
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const auto out = VectorOf<float>(res->body);
  ASSERT_EQ(out.size(), input.size());
  for (size_t i = 0; i < input.size(); ++i) ASSERT_EQ(out[i], input[i] + constants[i]) << i;

  auto js = InvokeJson(*client, "vecadd", {{"input", input}});
  ASSERT_TRUE(js);
  ASSERT_EQ(js->status, 200) << ErrorMessage(js);
  const json body = json::parse(js->body);
  ASSERT_EQ(body["output"].size(), input.size());
  for (size_t i = 0; i < input.size(); i += 9973) {
    EXPECT_EQ(body["output"][i].get<float>(), out[i]) << i;
  }
}

TEST(GatewayApi, ManifestsOfAnyValidSizeDeployAndRun) {
  // 4,001 stages and a 4 KiB description: about 150 KB of manifest, far more than one worker
  // control message holds (it travels in a memory file).
  TestGateway gw;
  auto client = gw.Client();
  json chain = json::array();
  for (int i = 0; i < 4000; ++i) chain.push_back({{"kernel", "noop"}, {"grid", 1}, {"block", 1}});
  chain.push_back({{"kernel", "copy_input_to_out"}, {"grid", 1}, {"block", 1}});
  // The limit is 4096 stages.
  json manifest = {{"description", std::string(4096, 'd')},
                   {"chain", chain},
                   {"input", {{"dtype", "float32"}, {"shape", {4}}}},
                   {"output", {{"dtype", "float32"}, {"shape", {4}}}}};
  ASSERT_GT(manifest.dump().size(), 150000u);
  auto deployed = DeployMultipart(*client, "long", manifest.dump(), TestLibraryBytes(), "");
  ASSERT_TRUE(deployed);
  ASSERT_EQ(deployed->status, 201) << deployed->body.substr(0, 400);
  const std::vector<float> in = {1, 2, 3, 4};
  auto res = InvokeBinary(*client, "long", BytesOf(in));
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body.substr(0, 400);
  EXPECT_EQ(VectorOf<float>(res->body), in);
  auto described = json::parse(client->Get("/v1/functions/long")->body);
  EXPECT_EQ(described["manifest"]["chain"].size(), 4001u);
}

// --isolation=none: a library can leave a thread running in its own code. Deleting its
// function must not unmap that code under the thread (the gateway would crash a moment later).
TEST(GatewayApi, ALibraryThreadThatOutlivesItsFunctionDoesNotCrashTheGateway) {
  const std::string dir = FreshDir("thread");
  const std::string marker = dir + "/marker";
  std::ofstream(marker) << "thread";
  ::setenv("KCHAIN_TEST_CONSTRUCTOR_MARKER", marker.c_str(), 1);
  TestGatewayOptions options;
  options.isolation = "none";
  TestGateway gw(options);
  auto client = gw.Client();
  for (int round = 0; round < 3; ++round) {
    ASSERT_EQ(DeployMultipart(*client, "threads", TestManifest({"copy_ticks"}, 4),
                              TestLibraryBytes("test_constructor_host"), "")
                  ->status,
              201);
    ASSERT_EQ(InvokeBinary(*client, "threads", std::string(16, '\0'))->status, 200);
    ASSERT_EQ(client->Delete("/v1/functions/threads")->status, 200);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the threads keep ticking
  EXPECT_EQ(client->Get("/healthz")->status, 200);
  ::unsetenv("KCHAIN_TEST_CONSTRUCTOR_MARKER");
}

TEST(GatewayApi, ListDescribeAndDelete) {
  TestGateway gw;
  auto client = gw.Client();
  ASSERT_EQ(DeploySample(*client, "mnist_cnn", "a")->status, 201);
  ASSERT_EQ(DeploySample(*client, "vecadd", "b")->status, 201);
  auto list = client->Get("/v1/functions");
  ASSERT_TRUE(list);
  const json functions = json::parse(list->body)["functions"];
  ASSERT_EQ(functions.size(), 2u);
  EXPECT_EQ(functions[0]["name"], "a");
  EXPECT_EQ(functions[1]["name"], "b");

  auto describe = client->Get("/v1/functions/a");
  ASSERT_TRUE(describe);
  ASSERT_EQ(describe->status, 200);
  const json d = json::parse(describe->body);
  EXPECT_EQ(d["versions"].size(), 1u);
  EXPECT_EQ(d["versions"][0]["library_sha256"].get<std::string>().size(), 64u);
  EXPECT_EQ(d["versions"][0]["constants_bytes"], 9372);
  EXPECT_EQ(d["instance_device_bytes"], 3136 + 14688 + 40 + 9372);
  EXPECT_EQ(d["instances"]["total"], 0);
  EXPECT_EQ(d["starts"]["cold"], 0);

  auto del = client->Delete("/v1/functions/a");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 200);
  EXPECT_EQ(client->Get("/v1/functions/a")->status, 404);
  EXPECT_EQ(InvokeBinary(*client, "a", std::string(3136, '\0'))->status, 404);
  EXPECT_EQ(json::parse(client->Get("/v1/functions")->body)["functions"].size(), 1u);
  EXPECT_FALSE(std::filesystem::exists(gw.data_dir() + "/tenants/default/functions/a"));
}

TEST(GatewayApi, DeployFromSeparateUploads) {
  TestGateway gw;
  auto client = gw.Client();
  const std::string library = ReadFile(SampleFile("mnist_cnn", "libmnist_cnn_host.so"));
  const std::string weights = ReadFile(SampleFile("mnist_cnn", "weights.bin"));
  auto up_lib = client->Post("/v1/uploads", library, "application/octet-stream");
  ASSERT_TRUE(up_lib);
  ASSERT_EQ(up_lib->status, 201) << up_lib->body;
  auto up_w = client->Post("/v1/uploads", weights, "application/octet-stream");
  ASSERT_EQ(up_w->status, 201);
  const json manifest = json::parse(ReadFile(SampleFile("mnist_cnn", "manifest.json")));
  const json deploy = {{"manifest", manifest},
                       {"library", json::parse(up_lib->body)["upload_id"]},
                       {"constants", json::parse(up_w->body)["upload_id"]}};
  auto res = client->Put("/v1/functions/mnist_cnn", deploy.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;
  auto inv = InvokeBinary(*client, "mnist_cnn", BytesOf(FirstImage()));
  ASSERT_EQ(inv->status, 200);
  EXPECT_NEAR(VectorOf<float>(inv->body)[0], 10.573035f, 1e-4);
}

TEST(GatewayApi, FunctionsSurviveARestart) {
  const std::string dir = FreshDir("restart");
  std::string before;
  {
    TestGateway gw({}, dir);
    auto client = gw.Client();
    ASSERT_EQ(DeploySample(*client, "mnist_cnn", "cnn")->status, 201);
    ASSERT_EQ(DeploySample(*client, "mnist_cnn", "cnn")->status, 200);  // version 2
    before = InvokeBinary(*client, "cnn", BytesOf(FirstImage()))->body;
  }
  TestGateway again({}, dir);
  auto client = again.Client();
  auto describe = client->Get("/v1/functions/cnn");
  ASSERT_EQ(describe->status, 200) << describe->body;
  const json d = json::parse(describe->body);
  EXPECT_EQ(d["version"], 2);
  EXPECT_EQ(d["versions"].size(), 2u);
  auto res = InvokeBinary(*client, "cnn", BytesOf(FirstImage()));
  ASSERT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("X-Kchain-Start"), "cold");
  EXPECT_EQ(res->body, before);
  // Only the current version's files are kept.
  EXPECT_FALSE(std::filesystem::exists(dir + "/tenants/default/functions/cnn/v1"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/tenants/default/functions/cnn/v2/kernel.so"));
}

TEST(GatewayApi, AStoredFunctionThatNoLongerLoadsIsReportedNotFatal) {
  const std::string dir = FreshDir("broken_store");
  {
    TestGateway gw({}, dir);
    ASSERT_EQ(DeploySample(*gw.Client(), "mnist_cnn", "cnn")->status, 201);
  }
  // Someone damages the stored library while the server is down.
  std::ofstream(dir + "/tenants/default/functions/cnn/v1/kernel.so", std::ios::trunc) << "junk";
  TestGateway again({}, dir);
  auto client = again.Client();
  auto describe = client->Get("/v1/functions/cnn");
  ASSERT_EQ(describe->status, 200);
  EXPECT_EQ(json::parse(describe->body)["state"], "load_failed");
  // The reason names the stored file relative to the data directory, never where that is.
  const std::string reason = json::parse(describe->body)["load_error"];
  EXPECT_NE(reason.find("tenants/default/functions/cnn/v1/kernel.so"), std::string::npos) << reason;
  EXPECT_EQ(reason.find(dir), std::string::npos) << reason;
  auto res = InvokeBinary(*client, "cnn", BytesOf(FirstImage()));
  EXPECT_EQ(res->status, 503);
  EXPECT_NE(ErrorMessage(res).find("failed to load"), std::string::npos) << ErrorMessage(res);
  // Deploying again repairs it.
  ASSERT_EQ(DeploySample(*client, "mnist_cnn", "cnn")->status, 200);
  EXPECT_EQ(InvokeBinary(*client, "cnn", BytesOf(FirstImage()))->status, 200);
}

TEST(GatewayApi, MetricsReportRequestsStartsInstancesAndMemory) {
  TestGateway gw;
  auto client = gw.Client();
  ASSERT_EQ(DeploySample(*client, "mnist_cnn", "cnn")->status, 201);
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(InvokeBinary(*client, "cnn", BytesOf(FirstImage()))->status, 200);
  EXPECT_EQ(InvokeBinary(*client, "cnn", "short")->status, 400);
  auto metrics = client->Get("/metrics");
  ASSERT_TRUE(metrics);
  ASSERT_EQ(metrics->status, 200);
  const std::string& m = metrics->body;
  for (const char* line :
       {"kchain_inference_request_success{tenant=\"default\",function=\"cnn\"} 3",
        "kchain_inference_request_failure{tenant=\"default\",function=\"cnn\",reason=\"invalid_"
        "argument\"} 1",
        "kchain_inference_starts{tenant=\"default\",function=\"cnn\",start=\"cold\"} 1",
        // The short input was refused before an instance was taken: no start.
        "kchain_inference_starts{tenant=\"default\",function=\"cnn\",start=\"hot\"} 2",
        "kchain_inference_request_duration_us_count{tenant=\"default\",function=\"cnn\",start="
        "\"hot\"} 2",
        "kchain_instances{tenant=\"default\",function=\"cnn\",state=\"idle\"} 1",
        "kchain_queue_depth{tenant=\"default\",function=\"cnn\"} 0",
        "kchain_device_memory_used_bytes{device=\"host CPU\"} 27236", "kchain_ready 1",
        "# TYPE kchain_inference_request_duration_us histogram",
        "kchain_library_load_duration_us{tenant=\"default\",function=\"cnn\"}"}) {
    EXPECT_NE(m.find(line), std::string::npos) << "missing: " << line;
  }
}

// What `curl -X POST` without -d sends: no Content-Length, no body.
std::string RawRequest(int port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string reply;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::send(fd, request.data(), request.size(), 0) == static_cast<ssize_t>(request.size())) {
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) {
      reply.append(buf, static_cast<size_t>(n));
      if (reply.find("\r\n\r\n") != std::string::npos && reply.find('}') != std::string::npos)
        break;
    }
  }
  ::close(fd);
  return reply;
}

TEST(GatewayApi, BodylessPostsAnswerAtOnce) {
  TestGateway gw;
  ASSERT_EQ(DeploySample(*gw.Client(), "mnist_cnn", "cnn")->status, 201);
  const auto start = std::chrono::steady_clock::now();
  const std::string park =
      RawRequest(gw.port(), "POST /v1/functions/cnn/park HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(park.rfind("HTTP/1.1 200", 0), 0u) << park;
  const std::string upload = RawRequest(gw.port(), "POST /v1/uploads HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(upload.rfind("HTTP/1.1 411", 0), 0u) << upload;
  EXPECT_NE(upload.find("length_required"), std::string::npos) << upload;
  // Both answered at once, not after the 60 s read timeout.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

// Many clients connecting at once (perf_analyzer opens all its connections together) must
// all get through the kernel's handshake even before the server accepts any: the listen
// backlog is deepened past cpp-httplib's 5. The server is bound but never served here, so
// only the backlog can hold the connections.
TEST(GatewayApi, ListenBacklogHoldsManySimultaneousConnects) {
  auto device = Device::Open(DeviceKind::kHost);
  ASSERT_TRUE(device.ok());
  ServiceOptions service_options;
  service_options.data_dir = FreshDir("backlog");
  auto service =
      Service::Create(service_options, MakeInProcessExecutor(*device, kchain::InstanceOptions{}),
                      [](const std::string&) {});
  ASSERT_TRUE(service.ok()) << service.status();
  Logger logger(LogLevel::kError);
  HttpOptions http;
  http.port = 0;
  HttpServer server(service->get(), &logger, http);
  auto port = server.Bind();
  ASSERT_TRUE(port.ok()) << port.status();
  constexpr int kClients = 64;
  std::vector<int> fds;
  int connected = 0;
  for (int i = 0; i < kClients; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    fds.push_back(fd);
    timeval timeout{.tv_sec = 0, .tv_usec = 200000};  // a dropped SYN waits 1 s for a retry
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(*port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) ++connected;
  }
  for (int fd : fds) ::close(fd);
  EXPECT_EQ(connected, kClients);
}

TEST(GatewayApi, ShutdownDrainsInFlightRequests) {
  TestGateway gw;
  auto client = gw.Client();
  ASSERT_EQ(DeploySlowFunction(*client, "slow")->status, 201);
  // The deploy counts as in flight until its log line, just after its response: let it go.
  for (int i = 0; i < 1000 && gw.server().in_flight() != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(gw.server().in_flight(), 0);
  const std::vector<uint32_t> input = {1500, 1, 2, 3};  // sleeps 1.5 s
  auto slow = std::async(std::launch::async, [&] {
    auto c = gw.Client();
    return InvokeBinary(*c, "slow", BytesOf(input));
  });
  // Wait until it is running, then stop the server under it.
  for (int i = 0; i < 1000 && gw.server().in_flight() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_GT(gw.server().in_flight(), 0);
  gw.Stop();
  auto res = slow.get();
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(VectorOf<uint32_t>(res->body), input);
}

}  // namespace
}  // namespace kchain::gateway::testing
