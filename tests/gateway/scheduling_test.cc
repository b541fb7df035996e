// Scheduling through the real gateway: start types as the design defines them
// (cold/warm/hot), parking under a memory budget (LRU), the parked TTL, the bounded queue
// (429), the invocation timeout (504), parallel instances, and replace while invoking.
#include <atomic>
#include <future>

#include "gateway_test_util.h"

namespace kchain::gateway::testing {
namespace {

using kchain::testing::SampleFile;

std::string Image() {
  const std::string all = ReadFile(SampleFile("mnist_cnn", "heldout_images.bin"));
  return all.substr(0, 784 * 4);
}

std::string StartOf(const httplib::Result& res) {
  return res ? res->get_header_value("X-Kchain-Start") : "<no response>";
}

TEST(GatewayScheduling, ColdHotParkWarmAndTtlExpiry) {
  SchedulerOptions options;
  options.parked_ttl = std::chrono::milliseconds(300);
  TestGateway gw(options);
  auto client = gw.Client();
  ASSERT_EQ(DeploySample(*client, "mnist_cnn", "cnn")->status, 201);

  auto first = InvokeBinary(*client, "cnn", Image());
  ASSERT_EQ(first->status, 200);
  EXPECT_EQ(StartOf(first), "cold");
  EXPECT_EQ(StartOf(InvokeBinary(*client, "cnn", Image())), "hot");
  EXPECT_EQ(StartOf(InvokeBinary(*client, "cnn", Image())), "hot");

  auto parked = client->Post("/v1/functions/cnn/park");
  ASSERT_EQ(parked->status, 200);
  EXPECT_EQ(json::parse(parked->body)["parked"], 1);
  json d = json::parse(client->Get("/v1/functions/cnn")->body);
  EXPECT_EQ(d["instances"]["parked"], 1);
  EXPECT_EQ(d["instances"]["idle"], 0);

  auto warm = InvokeJson(*client, "cnn", {{"input_base64", Base64Encode(AsBytes(Image()))}});
  ASSERT_EQ(warm->status, 200) << warm->body;
  const json w = json::parse(warm->body);
  EXPECT_EQ(w["start"], "warm");
  EXPECT_TRUE(w["timings_us"].contains("start"));  // the wake's cost is reported
  EXPECT_EQ(w["output"], json::parse(InvokeJson(*client, "cnn",
                                                {{"input_base64", Base64Encode(AsBytes(Image()))}})
                                         ->body)["output"]);

  // Parked past the TTL: the instance is destroyed and the next start is cold.
  ASSERT_EQ(client->Post("/v1/functions/cnn/park")->status, 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  d = json::parse(client->Get("/v1/functions/cnn")->body);
  EXPECT_EQ(d["instances"]["total"], 0);
  EXPECT_EQ(d["expirations"], 1);
  EXPECT_EQ(StartOf(InvokeBinary(*client, "cnn", Image())), "cold");

  d = json::parse(client->Get("/v1/functions/cnn")->body);
  EXPECT_EQ(d["starts"]["cold"], 2);
  EXPECT_EQ(d["starts"]["warm"], 1);
  EXPECT_EQ(d["starts"]["hot"], 3);
}

TEST(GatewayScheduling, MemoryBudgetParksTheLeastRecentlyUsedInstance) {
  // Each CNN instance holds 27236 bytes; the budget fits two.
  SchedulerOptions options;
  options.memory_budget_bytes = 2 * 27236 + 1000;
  TestGateway gw(options);
  auto client = gw.Client();
  for (const char* name : {"a", "b", "c"}) {
    ASSERT_EQ(DeploySample(*client, "mnist_cnn", name)->status, 201);
  }
  EXPECT_EQ(StartOf(InvokeBinary(*client, "a", Image())), "cold");
  EXPECT_EQ(StartOf(InvokeBinary(*client, "b", Image())), "cold");
  EXPECT_EQ(StartOf(InvokeBinary(*client, "a", Image())), "hot");   // b is now least recent
  EXPECT_EQ(StartOf(InvokeBinary(*client, "c", Image())), "cold");  // parks b
  EXPECT_EQ(json::parse(client->Get("/v1/functions/b")->body)["instances"]["parked"], 1);
  EXPECT_EQ(json::parse(client->Get("/v1/functions/a")->body)["instances"]["idle"], 1);
  EXPECT_EQ(StartOf(InvokeBinary(*client, "b", Image())), "warm");  // parks a (least recent)
  EXPECT_EQ(json::parse(client->Get("/v1/functions/a")->body)["instances"]["parked"], 1);
  EXPECT_EQ(StartOf(InvokeBinary(*client, "c", Image())), "hot");
  EXPECT_LE(gw.service().scheduler().resident_bytes(), options.memory_budget_bytes);
  EXPECT_LE(gw.service().executor().device_memory_in_use(), options.memory_budget_bytes);
}

TEST(GatewayScheduling, AFunctionLargerThanTheBudgetIsRefusedAtDeploy) {
  SchedulerOptions options;
  options.memory_budget_bytes = 10000;
  TestGateway gw(options);
  auto client = gw.Client();
  auto res = DeploySample(*client, "mnist_cnn", "cnn");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);  // permanent for this server: not a retryable 429
  EXPECT_NE(ErrorMessage(res).find("budget"), std::string::npos) << ErrorMessage(res);
}

TEST(GatewayScheduling, QueueFullIs429AndTimeoutIs504) {
  SchedulerOptions options;
  options.max_instances_per_function = 1;
  options.max_queue_per_function = 1;
  options.invoke_timeout = std::chrono::milliseconds(400);
  TestGateway gw(options);
  auto client = gw.Client();
  ASSERT_EQ(DeploySlowFunction(*client, "slow")->status, 201);
  const std::string slow = BytesOf(std::vector<uint32_t>{1000, 0, 0, 0});
  // One runs (1 s), one waits in the queue, the third finds the queue full.
  auto running =
      std::async(std::launch::async, [&] { return InvokeBinary(*gw.Client(), "slow", slow); });
  while (json::parse(client->Get("/v1/functions/slow")->body)["instances"]["busy"] != 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  auto queued =
      std::async(std::launch::async, [&] { return InvokeBinary(*gw.Client(), "slow", slow); });
  while (json::parse(client->Get("/v1/functions/slow")->body)["queue"]["waiting"] != 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  auto full = InvokeBinary(*client, "slow", slow);
  ASSERT_TRUE(full);
  EXPECT_EQ(full->status, 429);
  EXPECT_EQ(full->get_header_value("Retry-After"), "1");
  EXPECT_EQ(ErrorCode(full), "resource_exhausted");
  EXPECT_NE(ErrorMessage(full).find("queue"), std::string::npos);

  auto waited = queued.get();  // waited 400 ms for an instance held for 1 s
  ASSERT_TRUE(waited);
  EXPECT_EQ(waited->status, 504);
  EXPECT_EQ(ErrorCode(waited), "deadline_exceeded");
  // In-process, the timeout bounds the wait for an instance only; with process isolation it
  // also stops the run itself, by killing its worker.
  EXPECT_EQ(running.get()->status, gw.isolation() == "process" ? 504 : 200);
  // The server is fine afterwards.
  EXPECT_EQ(InvokeBinary(*client, "slow", BytesOf(std::vector<uint32_t>{0, 0, 0, 0}))->status, 200);
}

TEST(GatewayScheduling, ConcurrentInvocationsRunOnSeparateInstancesInParallel) {
  SchedulerOptions options;
  options.max_instances_per_function = 4;
  TestGateway gw(options);
  auto client = gw.Client();
  ASSERT_EQ(DeploySlowFunction(*client, "slow")->status, 201);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::future<httplib::Result>> calls;
  for (uint32_t i = 0; i < 4; ++i) {
    calls.push_back(std::async(std::launch::async, [&, i] {
      return InvokeBinary(*gw.Client(), "slow", BytesOf(std::vector<uint32_t>{300, i, 0, 0}));
    }));
  }
  for (uint32_t i = 0; i < 4; ++i) {
    auto res = calls[i].get();
    ASSERT_EQ(res->status, 200);
    EXPECT_EQ(VectorOf<uint32_t>(res->body)[1], i);  // each got its own answer
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  // Four 300 ms runs in parallel, not one after another (1.2 s).
  EXPECT_LT(elapsed, std::chrono::milliseconds(1100));
  EXPECT_EQ(json::parse(client->Get("/v1/functions/slow")->body)["instances"]["total"], 4);
}

TEST(GatewayScheduling, ReplaceWhileInvokingFailsNoRequestAndSwitchesVersion) {
  TestGateway gw;
  auto client = gw.Client();
  // Version 1 adds constants of 1.0, version 2 of 2.0.
  const std::string manifest = TestManifest({"add_constant", "double_tmp_to_out"}, 16, 16);
  const std::string lib = TestLibraryBytes();
  ASSERT_EQ(
      DeployMultipart(*client, "f", manifest, lib, BytesOf(std::vector<float>(16, 1.0f)))->status,
      201);
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0}, wrong{0}, v1{0}, v2{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&] {
      auto c = gw.Client();
      const std::string input = BytesOf(std::vector<float>(16, 0.5f));
      while (!stop) {
        auto res = InvokeBinary(*c, "f", input);
        if (!res || res->status != 200) {
          ++failures;
          continue;
        }
        const float out = VectorOf<float>(res->body)[0];
        const std::string version = res->get_header_value("X-Kchain-Version");
        if (version == "1" && out == 3.0f) {
          ++v1;
        } else if (version == "2" && out == 5.0f) {
          ++v2;
        } else {
          ++wrong;
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto replaced =
      DeployMultipart(*client, "f", manifest, lib, BytesOf(std::vector<float>(16, 2.0f)));
  ASSERT_EQ(replaced->status, 200) << replaced->body;
  EXPECT_EQ(json::parse(replaced->body)["version"], 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  stop = true;
  for (auto& t : callers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(v1.load(), 0);
  EXPECT_GT(v2.load(), 0);
  // After the switch, every call is served by version 2.
  auto after = InvokeBinary(*client, "f", BytesOf(std::vector<float>(16, 0.5f)));
  EXPECT_EQ(after->get_header_value("X-Kchain-Version"), "2");
}

TEST(GatewayScheduling, AFailedReplaceKeepsServingTheOldVersion) {
  TestGateway gw;
  auto client = gw.Client();
  ASSERT_EQ(DeploySample(*client, "mnist_cnn", "cnn")->status, 201);
  const std::string before = InvokeBinary(*client, "cnn", Image())->body;
  // A replace whose library lacks the kernels.
  auto bad = DeployMultipart(*client, "cnn", ReadFile(SampleFile("mnist_cnn", "manifest.json")),
                             TestLibraryBytes(), ReadFile(SampleFile("mnist_cnn", "weights.bin")));
  ASSERT_EQ(bad->status, 400);
  auto res = InvokeBinary(*client, "cnn", Image());
  ASSERT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("X-Kchain-Version"), "1");
  EXPECT_EQ(res->body, before);
  EXPECT_EQ(json::parse(client->Get("/v1/functions/cnn")->body)["versions"].size(), 1u);
  EXPECT_FALSE(std::filesystem::exists(gw.data_dir() + "/tenants/default/functions/cnn/v2"));
}

}  // namespace
}  // namespace kchain::gateway::testing
