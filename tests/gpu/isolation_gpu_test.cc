// Process isolation on the GPU: CUDA faults stay inside their worker. Unlike the in-process
// gateway (gateway_gpu_test.cc), an illegal address breaks one worker's context only: the
// server stays ready and every other function keeps running. Label `gpu`.
#include <map>

#include "gateway/gateway_test_util.h"
#include "gateway/http/auth.h"

namespace kchain::gateway::testing {
namespace {

using kchain::testing::SampleFile;

class IsolationGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Device::CudaDeviceCount() == 0) {
      GTEST_SKIP() << "NOT RUN: no CUDA device visible (run on the GPU machine)";
    }
  }
  static TestGatewayOptions Options() {
    TestGatewayOptions options;
    options.isolation = "process";
    options.device_kind = DeviceKind::kCuda;
    options.scheduler.invoke_timeout = std::chrono::milliseconds(3000);
    options.worker_memory_limit = uint64_t{512} << 20;
    return options;
  }
};

std::string MisbehaveManifest() {
  return R"({"chain": [{"kernel": "misbehave_by_length", "grid": 1, "block": 1}],
             "input": {"dtype": "uint8"}, "max_input_bytes": 32, "tmp_bytes": 64,
             "output": {"dtype": "uint8", "shape": [4]}})";
}

// One worker per function: a CUDA fault costs the faulting function its worker only.
TEST_F(IsolationGpu, CudaFaultsStayInsideTheirWorker) {
  TestGatewayOptions options = Options();
  options.worker_scope = WorkerScope::kFunction;
  TestGateway gw(options);
  auto client = gw.Client();
  ASSERT_EQ(json::parse(client->Get("/v1")->body)["device"]["kind"], "cuda");
  ASSERT_EQ(DeployMultipart(*client, "victim", MisbehaveManifest(),
                            TestLibraryBytes("test_kernels_cuda"), "")
                ->status,
            201);
  ASSERT_EQ(DeploySample(*client, "mnist_cnn", "bystander", "cuda")->status, 201);
  const std::string image = ReadFile(SampleFile("mnist_cnn", "heldout_images.bin")).substr(0, 3136);
  const std::string expected = InvokeBinary(*client, "bystander", image)->body;
  ASSERT_EQ(expected.size(), 40u);
  ASSERT_EQ(InvokeBinary(*client, "victim", "abcd")->status, 200);

  const struct {
    size_t length;
    int status;
    const char* what;
  } faults[] = {
      {20, 502, "illegal memory access"},
      {8, 502, "SIGSEGV"},
      {12, 502, "SIGABRT"},
      {16, 504, "did not finish within the invocation timeout"},
      {24, 502, "exceeded its memory limit"},
  };
  for (const auto& fault : faults) {
    SCOPED_TRACE(fault.what);
    auto res = InvokeBinary(*client, "victim", std::string(fault.length, 'x'));
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, fault.status) << res->body;
    EXPECT_NE(ErrorMessage(res).find(fault.what), std::string::npos) << ErrorMessage(res);
    EXPECT_NE(ErrorMessage(res).find("misbehave_by_length"), std::string::npos)
        << ErrorMessage(res);
    // The server stays ready and the other function runs, hot, with the right answer.
    EXPECT_EQ(client->Get("/readyz")->status, 200);
    auto other = InvokeBinary(*client, "bystander", image);
    ASSERT_EQ(other->status, 200) << other->body;
    EXPECT_EQ(other->body, expected);
    EXPECT_EQ(other->get_header_value("X-Kchain-Start"), "hot");
    // And the faulty function itself runs again, in a fresh worker.
    auto again = InvokeBinary(*client, "victim", "abcd");
    ASSERT_EQ(again->status, 200) << again->body;
    EXPECT_EQ(again->body, "abcd");
    std::printf("contained: %s\n", ErrorMessage(res).c_str());
  }
  const json restarts = json::parse(client->Get("/readyz")->body)["workers"]["restarts"];
  std::printf("worker restarts: %s\n", restarts.dump().c_str());
  EXPECT_EQ(restarts["device_fault"], 1);
  EXPECT_EQ(restarts["segfault"], 1);
  EXPECT_EQ(restarts["abort"], 1);
  EXPECT_EQ(restarts["timeout"], 1);
  EXPECT_EQ(restarts["memory_limit"], 1);
}

// Tenant workers (the default scope): tenant A's CNN, at 8 clients, sees no error while
// tenant B's functions fault over and over (illegal address, __trap(), a kernel that never
// ends): B's worker dies each time, A's context is another one.
TEST_F(IsolationGpu, TenantWorkersContainCudaFaultsUnderLoad) {
  auto keys = ApiKeys::Parse(R"({"keys": [{"key": "tenant-a-0123456789", "tenant": "a"},
                                          {"key": "tenant-b-0123456789", "tenant": "b"}]})");
  ASSERT_TRUE(keys.ok());
  TestGatewayOptions options = Options();
  options.keys = &*keys;
  options.scheduler.max_instances_per_function = 8;
  TestGateway gw(options);
  auto a = gw.Client("tenant-a-0123456789"), b = gw.Client("tenant-b-0123456789");
  ASSERT_EQ(DeploySample(*a, "mnist_cnn", "cnn", "cuda")->status, 201);
  ASSERT_EQ(
      DeployMultipart(*b, "victim", MisbehaveManifest(), TestLibraryBytes("test_kernels_cuda"), "")
          ->status,
      201);
  const std::string image = ReadFile(SampleFile("mnist_cnn", "heldout_images.bin")).substr(0, 3136);
  const std::string expected = InvokeBinary(*a, "cnn", image)->body;
  ASSERT_EQ(expected.size(), 40u);
  auto drive = [&](std::chrono::milliseconds how_long, int* served, int* wrong) {
    std::atomic<int> ok{0}, bad{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int t = 0; t < 8; ++t) {
      clients.emplace_back([&] {
        auto c = gw.Client("tenant-a-0123456789");
        while (!stop) {
          auto res = InvokeBinary(*c, "cnn", image);
          (res && res->status == 200 && res->body == expected ? ok : bad)++;
        }
      });
    }
    std::this_thread::sleep_for(how_long);
    stop = true;
    for (auto& t : clients) t.join();
    *served = ok;
    *wrong = bad;
  };
  int quiet_served = 0, quiet_wrong = 0;
  drive(std::chrono::milliseconds(2000), &quiet_served, &quiet_wrong);
  std::atomic<bool> stop{false};
  std::map<int, int> b_statuses;
  std::thread faults([&] {
    const size_t lengths[] = {20, 28, 16};  // illegal address, trap, endless
    for (int i = 0; !stop; ++i) {
      auto res = InvokeBinary(*b, "victim", std::string(lengths[i % 3], 'x'));
      ++b_statuses[res ? res->status : -1];
    }
  });
  int noisy_served = 0, noisy_wrong = 0;
  drive(std::chrono::milliseconds(6000), &noisy_served, &noisy_wrong);
  stop = true;
  faults.join();
  EXPECT_EQ(quiet_wrong, 0);
  EXPECT_EQ(noisy_wrong, 0);
  EXPECT_GT(b_statuses[502], 0);
  std::string statuses;
  for (const auto& [status, n] : b_statuses) {
    statuses += std::to_string(status) + ": " + std::to_string(n) + " ";
  }
  std::printf(
      "containment: tenant a %.0f req/s without faults, %.0f req/s with tenant b faulting "
      "(%d errors); b's answers: %s\n",
      quiet_served / 2.0, noisy_served / 6.0, noisy_wrong, statuses.c_str());
}

TEST_F(IsolationGpu, ColdStartSplitWithAPreInitializedWorker) {
  TestGateway gw(Options());
  auto client = gw.Client();
  ASSERT_EQ(DeploySample(*client, "mnist_cnn", "cnn", "cuda")->status, 201);
  // Let the pool refill after the deploy's validation worker.
  for (int i = 0; i < 300; ++i) {
    if (json::parse(client->Get("/readyz")->body)["workers"]["idle"] == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::vector<float> pixels(784, 0.5f);
  auto cold = InvokeJson(*client, "cnn", {{"input", pixels}});
  ASSERT_EQ(cold->status, 200) << cold->body;
  const json t = json::parse(cold->body)["timings_us"];
  ASSERT_EQ(json::parse(cold->body)["start"], "cold");
  std::printf(
      "cuda cold start split (us): acquire %.1f, library %.1f, create %.1f, constants "
      "%.1f, first run %.1f, total %.1f\n",
      t["start"]["acquire"].get<double>(), t["start"]["library"].get<double>(),
      t["start"]["create"].get<double>(), t["start"]["constants"].get<double>(),
      t["run"].get<double>(), t["total"].get<double>());
  // A pre-initialized worker: no CUDA context to create on the critical path (230-350 ms).
  EXPECT_LT(t["start"]["acquire"].get<double>(), 50000);
  EXPECT_LT(t["total"].get<double>(), 150000);
  EXPECT_EQ(json::parse(cold->body)["exec_mode"], "direct");  // captured right after it
  auto hot = InvokeJson(*client, "cnn", {{"input", pixels}});
  EXPECT_EQ(json::parse(hot->body)["exec_mode"], "graph");
}

// Every way a worker can wait for the GPU gives the same answers, cold and hot.
TEST_F(IsolationGpu, EveryGpuWaitServesTheSameResults) {
  std::vector<float> pixels(784);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<float>(i % 17) / 16;
  std::string expected;
  for (const char* wait : {"auto", "spin", "yield", "block"}) {
    TestGatewayOptions options = Options();
    options.gpu_wait = wait;
    TestGateway gw(options);
    auto client = gw.Client();
    ASSERT_EQ(DeploySample(*client, "mnist_cnn", "cnn", "cuda")->status, 201) << wait;
    for (int i = 0; i < 20; ++i) {
      auto res = InvokeJson(*client, "cnn", {{"input", pixels}});
      ASSERT_EQ(res->status, 200) << wait << ": " << res->body;
      const std::string output = json::parse(res->body)["output"].dump();
      if (expected.empty()) expected = output;
      EXPECT_EQ(output, expected) << wait << " run " << i;
    }
  }
}

}  // namespace
}  // namespace kchain::gateway::testing
