// Tenants and API keys against the real gateway with process isolation: no key, no entry;
// every endpoint keeps tenants apart (404, never 403, so names do not leak); an admin sees
// all; workers never host two tenants; one tenant crashing its function over and over does
// not disturb another's invocations.
#include <atomic>
#include <future>

#include "gateway/auth.h"
#include "gateway_test_util.h"

namespace kchain::gateway::testing {
namespace {

constexpr const char* kAlpha = "alpha-key-0123456789";
constexpr const char* kBeta = "beta-key-0123456789";
constexpr const char* kAdmin = "admin-key-0123456789";

ApiKeys Keys() {
  auto keys = ApiKeys::Parse(std::string(R"({"keys": [
      {"key": ")") + kAlpha + R"(", "tenant": "alpha"},
      {"key": ")" + kBeta + R"(", "tenant": "beta"},
      {"key": ")" + kAdmin + R"(", "tenant": "ops", "admin": true}]})");
  EXPECT_TRUE(keys.ok()) << keys.status();
  return std::move(*keys);
}

TestGatewayOptions WithKeys(const ApiKeys* keys) {
  TestGatewayOptions options;
  options.isolation = "process";
  options.keys = keys;
  return options;
}

std::string PidManifest() {
  return R"({"chain": [{"kernel": "report_pid", "grid": 1, "block": 1}],
             "input": {"dtype": "uint8", "shape": [4]}, "output": {"dtype": "int32", "shape": [1]}})";
}

TEST(ApiKeys, ParseRejectsBadFilesWithoutRepeatingKeys) {
  EXPECT_FALSE(ApiKeys::Parse(R"({"keys": []})").ok());
  EXPECT_FALSE(ApiKeys::Parse(R"({"keys": [{"key": "short", "tenant": "a"}]})").ok());
  EXPECT_FALSE(
      ApiKeys::Parse(R"({"keys": [{"key": "0123456789abcdefXX", "tenant": "../x"}]})").ok());
  auto dup = ApiKeys::Parse(R"({"keys": [{"key": "0123456789abcdefXX", "tenant": "a"},
                                         {"key": "0123456789abcdefXX", "tenant": "b"}]})");
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.status().message().find("0123456789abcdefXX"), std::string::npos);
  auto broken = ApiKeys::Parse(R"({"keys": [{"key": "secret-secret-secret", "tenant": )");
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.status().message().find("secret"), std::string::npos) << broken.status();
}

TEST(ApiKeys, AuthenticateMapsKeysToTenants) {
  const ApiKeys keys = Keys();
  EXPECT_EQ(keys.Authenticate(std::string("Bearer ") + kAlpha)->tenant, "alpha");
  EXPECT_FALSE(keys.Authenticate(std::string("Bearer ") + kAlpha)->admin);
  EXPECT_TRUE(keys.Authenticate(std::string("Bearer ") + kAdmin)->admin);
  for (const std::string& bad : std::vector<std::string>{
           "", "Bearer", "Bearer ", "bearer alpha-key-0123456789",
           "Basic YWxwaGE=", "Bearer alpha-key-012345678", std::string("Bearer ") + kAlpha + "x"}) {
    auto caller = keys.Authenticate(bad);
    EXPECT_EQ(caller.status().code(), StatusCode::kUnauthenticated) << bad;
  }
}

TEST(Tenants, RequestsWithoutAValidKeyAre401ButProbesAreOpen) {
  const ApiKeys keys = Keys();
  TestGateway gw(WithKeys(&keys));
  for (const std::string key : {"", "not-a-valid-key-at-all"}) {
    auto client = gw.Client(key);
    std::vector<httplib::Result> results;
    results.push_back(client->Get("/v1/functions"));
    results.push_back(client->Get("/v1"));
    results.push_back(client->Get("/metrics"));
    results.push_back(client->Post("/v1/functions/f/invoke", "x", "application/octet-stream"));
    results.push_back(client->Delete("/v1/functions/f"));
    for (auto& res : results) {
      ASSERT_TRUE(res);
      EXPECT_EQ(res->status, 401) << key;
      EXPECT_EQ(ErrorCode(res), "unauthenticated");
      EXPECT_EQ(res->get_header_value("WWW-Authenticate"), "Bearer realm=\"kchain\"");
      EXPECT_EQ(res->body.find(key.empty() ? "\x01" : key), std::string::npos);
    }
    EXPECT_EQ(client->Get("/healthz")->status, 200);
    EXPECT_EQ(client->Get("/readyz")->status, 200);
  }
}

TEST(Tenants, EveryEndpointKeepsTenantsApart) {
  const ApiKeys keys = Keys();
  TestGateway gw(WithKeys(&keys));
  auto alpha = gw.Client(kAlpha), beta = gw.Client(kBeta), admin = gw.Client(kAdmin);
  ASSERT_EQ(DeployMultipart(*alpha, "f", PidManifest(), TestLibraryBytes(), "")->status, 201);
  ASSERT_EQ(InvokeBinary(*alpha, "f", std::string(4, '\0'))->status, 200);
  auto upload = alpha->Post("/v1/uploads", TestLibraryBytes(), "application/octet-stream");
  ASSERT_EQ(upload->status, 201);
  const std::string upload_id = json::parse(upload->body)["upload_id"];

  // Beta sees nothing of alpha's, and gets the same answers as for a function that is not.
  EXPECT_EQ(json::parse(beta->Get("/v1/functions")->body)["functions"], json::array());
  const std::string ghost = ErrorMessage(beta->Get("/v1/functions/ghost"));
  std::vector<httplib::Result> results;
  results.push_back(beta->Get("/v1/functions/f"));
  results.push_back(
      beta->Post("/v1/functions/f/invoke", std::string(4, '\0'), "application/octet-stream"));
  results.push_back(beta->Post("/v1/functions/f/park", "", "application/octet-stream"));
  results.push_back(beta->Delete("/v1/functions/f"));
  results.push_back(beta->Get("/v1/functions/f?tenant=alpha"));
  results.push_back(beta->Post("/v1/functions/f/invoke?tenant=alpha", std::string(4, '\0'),
                               "application/octet-stream"));
  for (auto& res : results) {
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 404) << res->body;
    EXPECT_EQ(ErrorMessage(res), std::string(ghost).replace(ghost.find("ghost"), 5, "f"));
  }
  EXPECT_EQ(beta->Get("/v1/functions?tenant=alpha")->status, 404);
  auto metrics = beta->Get("/metrics");
  EXPECT_EQ(metrics->status, 401);
  EXPECT_EQ(metrics->get_header_value("WWW-Authenticate"), "Bearer realm=\"kchain\"");
  // Alpha's upload is not beta's to use.
  const json deploy = {{"manifest", json::parse(PidManifest())}, {"library", upload_id}};
  auto stolen = beta->Put("/v1/functions/g", deploy.dump(), "application/json");
  EXPECT_EQ(stolen->status, 400);
  EXPECT_NE(ErrorMessage(stolen).find("no upload with id"), std::string::npos);

  // Beta's own "f" is a different function; alpha's is untouched.
  ASSERT_EQ(DeployMultipart(*beta, "f", PidManifest(), TestLibraryBytes(), "")->status, 201);
  EXPECT_EQ(json::parse(alpha->Get("/v1/functions/f")->body)["version"], 1);
  EXPECT_EQ(json::parse(beta->Get("/v1/functions/f")->body)["tenant"], "beta");
  ASSERT_EQ(beta->Delete("/v1/functions/f")->status, 200);
  EXPECT_EQ(InvokeBinary(*alpha, "f", std::string(4, '\0'))->status, 200);

  // The admin sees every tenant, and can act on one with ?tenant=.
  const json all = json::parse(admin->Get("/v1/functions")->body)["functions"];
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0]["tenant"], "alpha");
  EXPECT_EQ(admin->Get("/v1/functions/f?tenant=alpha")->status, 200);
  EXPECT_EQ(admin
                ->Post("/v1/functions/f/invoke?tenant=alpha", std::string(4, '\0'),
                       "application/octet-stream")
                ->status,
            200);
  EXPECT_EQ(admin->Get("/v1/functions/f")->status, 404);  // its own tenant has no "f"
  EXPECT_EQ(admin->Get("/metrics")->status, 200);
}

TEST(Tenants, WorkersNeverHostTwoTenants) {
  const ApiKeys keys = Keys();
  TestGateway gw(WithKeys(&keys));
  auto alpha = gw.Client(kAlpha), beta = gw.Client(kBeta);
  ASSERT_EQ(DeployMultipart(*alpha, "f", PidManifest(), TestLibraryBytes(), "")->status, 201);
  ASSERT_EQ(DeployMultipart(*beta, "f", PidManifest(), TestLibraryBytes(), "")->status, 201);
  auto pid_of = [](httplib::Client& c) {
    auto res = InvokeBinary(c, "f", std::string(4, '\0'));
    return res && res->status == 200 ? VectorOf<int32_t>(res->body)[0] : -1;
  };
  const int32_t a = pid_of(*alpha), b = pid_of(*beta);
  ASSERT_GT(a, 0);
  ASSERT_GT(b, 0);
  EXPECT_NE(a, b);
  EXPECT_NE(a, ::getpid());
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(pid_of(*alpha), a);
    EXPECT_EQ(pid_of(*beta), b);
  }
}

TEST(Tenants, OneTenantCrashingRepeatedlyDoesNotDisturbAnother) {
  const ApiKeys keys = Keys();
  TestGateway gw(WithKeys(&keys));
  auto alpha = gw.Client(kAlpha), beta = gw.Client(kBeta);
  const std::string crasher = R"({"chain": [{"kernel": "misbehave", "grid": 1, "block": 1}],
      "input": {"dtype": "uint32", "shape": [4]}, "output": {"dtype": "uint32", "shape": [4]}})";
  ASSERT_EQ(DeployMultipart(*alpha, "crasher", crasher, TestLibraryBytes(), "")->status, 201);
  ASSERT_EQ(DeploySample(*beta, "mnist_cnn", "cnn")->status, 201);
  const std::string image =
      ReadFile(kchain::testing::SampleFile("mnist_cnn", "heldout_images.bin")).substr(0, 3136);
  const std::string expected = InvokeBinary(*beta, "cnn", image)->body;

  std::atomic<bool> stop{false};
  std::atomic<int> crashes{0}, crash_other{0}, served{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&] {
      auto c = gw.Client(kAlpha);
      while (!stop) {
        auto res = InvokeBinary(*c, "crasher", BytesOf(std::vector<uint32_t>{1, 0, 0, 0}));
        (res && res->status == 502 ? crashes : crash_other)++;
      }
    });
    threads.emplace_back([&] {
      auto c = gw.Client(kBeta);
      while (!stop) {
        auto res = InvokeBinary(*c, "cnn", image);
        (res && res->status == 200 && res->body == expected ? served : failed)++;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(3));
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GT(served.load(), 100);
  EXPECT_GT(crashes.load(), 10);
  // Crashes might also meet a full queue (429) when all instances are being replaced; none
  // may be anything else.
  std::printf("3 s: beta served %d, all correct; alpha crashed %d times (%d other answers)\n",
              served.load(), crashes.load(), crash_other.load());
  EXPECT_EQ(InvokeBinary(*alpha, "crasher", BytesOf(std::vector<uint32_t>{0, 1, 2, 3}))->status,
            200);
}

}  // namespace
}  // namespace kchain::gateway::testing
