// Process isolation against the real gateway (host backend): each kind of fault fails only
// the invocation that caused it, its worker is replaced, the next invocation succeeds; the
// sandbox refuses what a launcher has no use for; pre-initialized workers serve cold starts
// and the pool refills.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <iterator>
#include <string>

#include "gateway_test_util.h"

namespace kchain::gateway::testing {
namespace {

using kchain::testing::SampleFile;

constexpr uint32_t kBehave = 0, kSegfault = 1, kAbort = 2, kSpin = 3, kEatMemory = 4;

TestGatewayOptions ProcessOptions() {
  TestGatewayOptions options;
  options.isolation = "process";
  options.scheduler.invoke_timeout = std::chrono::milliseconds(1500);
  options.worker_memory_limit = uint64_t{256} << 20;
  return options;
}

std::string MisbehaveManifest() {
  return R"({"chain": [{"kernel": "misbehave", "grid": 1, "block": 1}],
             "input": {"dtype": "uint32", "shape": [4]}, "output": {"dtype": "uint32", "shape": [4]}})";
}

std::string Mode(uint32_t mode) { return BytesOf(std::vector<uint32_t>{mode, 7, 8, 9}); }

// Waits (up to 10 s) until `predicate(readyz body)` holds.
template <typename Predicate>
json WaitForReady(httplib::Client& client, Predicate predicate) {
  json body;
  for (int i = 0; i < 1000; ++i) {
    auto res = client.Get("/readyz");
    if (res && res->status == 200) {
      body = json::parse(res->body);
      if (predicate(body)) return body;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return body;
}

// With one worker per function, a fault costs only the faulting function its worker: the
// tenant's other function stays hot. (With the default tenant scope they share the worker:
// see Tenants.* for containment between tenants.)
TEST(Isolation, EachFaultFailsOnlyItsInvocationAndTheWorkerIsReplaced) {
  TestGatewayOptions options = ProcessOptions();
  options.worker_scope = WorkerScope::kFunction;
  TestGateway gw(options);
  auto client = gw.Client();
  ASSERT_EQ(DeployMultipart(*client, "victim", MisbehaveManifest(), TestLibraryBytes(), "")->status,
            201);
  ASSERT_EQ(DeploySample(*client, "mnist_cnn", "bystander")->status, 201);
  const std::string image = ReadFile(SampleFile("mnist_cnn", "heldout_images.bin")).substr(0, 3136);
  ASSERT_EQ(InvokeBinary(*client, "bystander", image)->status, 200);
  ASSERT_EQ(InvokeBinary(*client, "victim", Mode(kBehave))->status, 200);

  const struct {
    uint32_t mode;
    int status;
    const char* code;
    const char* what;
  } faults[] = {
      {kSegfault, 502, "kernel_error", "crashed with SIGSEGV (segmentation fault)"},
      {kAbort, 502, "kernel_error", "aborted (SIGABRT)"},
      {kSpin, 504, "deadline_exceeded", "did not finish within the invocation timeout (1500 ms)"},
      {kEatMemory, 502, "kernel_error", "exceeded its memory limit"},
  };
  for (const auto& fault : faults) {
    SCOPED_TRACE(fault.what);
    auto res = InvokeBinary(*client, "victim", Mode(fault.mode));
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, fault.status) << res->body;
    EXPECT_EQ(ErrorCode(res), fault.code);
    const std::string message = ErrorMessage(res);
    EXPECT_NE(message.find("kernel 'misbehave' (stage 1 of 1) of 'victim'"), std::string::npos)
        << message;
    EXPECT_NE(message.find(fault.what), std::string::npos) << message;
    EXPECT_NE(message.find("the worker is replaced"), std::string::npos) << message;
    // Nobody else noticed: another function, and the gateway itself.
    auto other = InvokeBinary(*client, "bystander", image);
    ASSERT_TRUE(other);
    EXPECT_EQ(other->status, 200);
    EXPECT_EQ(other->get_header_value("X-Kchain-Start"), "hot");
    // The same function, with a healthy input, runs again in a fresh worker.
    auto again = InvokeBinary(*client, "victim", Mode(kBehave));
    ASSERT_TRUE(again);
    EXPECT_EQ(again->status, 200) << again->body;
    EXPECT_EQ(again->get_header_value("X-Kchain-Start"), "cold");
    EXPECT_EQ(VectorOf<uint32_t>(again->body), (std::vector<uint32_t>{0, 7, 8, 9}));
  }

  auto ready = client->Get("/readyz");
  ASSERT_EQ(ready->status, 200);
  const json restarts = json::parse(ready->body)["workers"]["restarts"];
  EXPECT_EQ(restarts, json({{"segfault", 1}, {"abort", 1}, {"timeout", 1}, {"memory_limit", 1}}));
  const std::string metrics = client->Get("/metrics")->body;
  for (const char* line : {"kchain_worker_restarts{reason=\"segfault\"} 1",
                           "kchain_worker_restarts{reason=\"timeout\"} 1",
                           "kchain_worker_restarts{reason=\"memory_limit\"} 1"}) {
    EXPECT_NE(metrics.find(line), std::string::npos) << line;
  }
  const json info = json::parse(client->Get("/v1")->body);
  // Admins see every tenant's restarts, so the message says whose function it was.
  const std::string last = info["workers"]["last_restart"].get<std::string>();
  EXPECT_EQ(last.rfind("default/victim: kernel 'misbehave' (stage 1 of 1) of 'victim' failed: its "
                       "worker exceeded its memory limit",
                       0),
            0u)
      << last;
}

TEST(Isolation, TheSandboxRefusesWhatALauncherHasNoUseFor) {
  TestGateway gw(ProcessOptions());
  auto client = gw.Client();
  const std::string manifest = R"({"chain": [{"kernel": "try_forbidden", "grid": 1, "block": 1}],
      "input": {"dtype": "uint8", "shape": [4]}, "output": {"dtype": "int32", "shape": [8]}})";
  ASSERT_EQ(DeployMultipart(*client, "probe", manifest, TestLibraryBytes(), "")->status, 201);
  auto res = InvokeBinary(*client, "probe", std::string(4, '\0'));
  ASSERT_EQ(res->status, 200) << res->body;
  const auto r = VectorOf<int32_t>(res->body);
  EXPECT_EQ(r[0], EPERM) << "fork";
  EXPECT_EQ(r[1], EPERM) << "socket";
  EXPECT_EQ(r[2], EPERM) << "ptrace";
  EXPECT_EQ(r[3], EPERM) << "kill(gateway)";
  EXPECT_EQ(r[4], EPERM) << "execve";
  EXPECT_NE(r[5], ::getpid()) << "the kernel ran in the gateway";
  if (::geteuid() == 0) {
    // A gateway running as root hands workers to nobody: root's files are out of reach.
    EXPECT_EQ(r[6], 65534) << "uid";
    EXPECT_EQ(r[7], EACCES) << "open /etc/shadow";
  }
  const std::string sandbox = json::parse(client->Get("/v1")->body)["sandbox"];
  EXPECT_NE(sandbox.find("seccomp"), std::string::npos) << sandbox;
  EXPECT_NE(sandbox.find("resource limits"), std::string::npos) << sandbox;
  EXPECT_NE(sandbox.find("private working directory"), std::string::npos) << sandbox;
  if (::geteuid() == 0) {
    EXPECT_NE(sandbox.find("unprivileged user"), std::string::npos) << sandbox;
  }
  std::printf("sandbox: %s\n", sandbox.c_str());
}

// The filter is an allow-list: calls nobody listed (io_uring, userfaultfd, keyrings, new
// namespaces, personality) fail with EPERM, while threads and memory work.
TEST(Isolation, TheSeccompFilterIsAnAllowList) {
  TestGateway gw(ProcessOptions());
  auto client = gw.Client();
  const std::string manifest = R"({"chain": [{"kernel": "try_unlisted", "grid": 1, "block": 1}],
      "input": {"dtype": "uint8", "shape": [4]}, "output": {"dtype": "int32", "shape": [8]}})";
  ASSERT_EQ(DeployMultipart(*client, "unlisted", manifest, TestLibraryBytes(), "")->status, 201);
  auto res = InvokeBinary(*client, "unlisted", std::string(4, '\0'));
  ASSERT_EQ(res->status, 200) << res->body;
  const auto r = VectorOf<int32_t>(res->body);
  EXPECT_EQ(r[0], EPERM) << "io_uring_setup";
  EXPECT_EQ(r[1], EPERM) << "personality";
  EXPECT_EQ(r[2], EPERM) << "userfaultfd";
  EXPECT_EQ(r[3], EPERM) << "add_key";
  EXPECT_EQ(r[4], EPERM) << "unshare";
  EXPECT_EQ(r[5], 1) << "a thread";
  EXPECT_EQ(r[6], 1) << "mmap";
  EXPECT_NE(r[7], ::getpid());
}

TEST(Isolation, ADeployBindsAWorkerAndColdStartsLoadIntoIt) {
  TestGateway gw(ProcessOptions());
  auto client = gw.Client();
  json ready = WaitForReady(*client, [](const json& b) { return b["workers"]["idle"] == 2; });
  ASSERT_EQ(ready["workers"]["idle"], 2) << ready;
  const int live_at_start = ready["workers"]["live"];
  ASSERT_EQ(DeploySample(*client, "mnist_cnn", "cnn")->status, 201);
  // The deploy loaded the library into a pre-initialized worker, now the tenant's; the pool
  // refills behind it.
  ready = WaitForReady(*client, [&](const json& b) {
    return b["workers"]["idle"] == 2 && b["workers"]["bound"] == 1;
  });
  ASSERT_EQ(ready["workers"]["idle"], 2) << ready;
  ASSERT_EQ(ready["workers"]["bound"], 1) << ready;
  EXPECT_EQ(ready["workers"]["live"], live_at_start + 1) << ready;

  std::vector<float> pixels(784, 0.25f);
  auto cold = InvokeJson(*client, "cnn", {{"input", pixels}});
  ASSERT_EQ(cold->status, 200) << cold->body;
  const json body = json::parse(cold->body);
  ASSERT_EQ(body["start"], "cold");
  const json split = body["timings_us"]["start"];
  // The cold start split: the tenant's worker is there already, with the library loaded:
  // only the instance (buffers, stream) and its constants' upload remain.
  EXPECT_LT(split["acquire"].get<double>(), 50000) << split;
  EXPECT_EQ(split["library"].get<double>(), 0) << split;
  EXPECT_GT(split["create"].get<double>(), 0) << split;
  EXPECT_GT(split["constants"].get<double>(), 0) << split;
  std::printf("cold start split (us): %s, first run %.1f\n", split.dump().c_str(),
              body["timings_us"]["run"].get<double>());
  // No new worker for it.
  ready = json::parse(client->Get("/readyz")->body);
  EXPECT_EQ(ready["workers"]["bound"], 1) << ready;
  EXPECT_EQ(ready["workers"]["live"], live_at_start + 1) << ready;
}

TEST(Isolation, WithTheInstanceScopeColdStartsTakePreInitializedWorkers) {
  TestGatewayOptions options = ProcessOptions();
  options.worker_scope = WorkerScope::kInstance;
  TestGateway gw(options);
  auto client = gw.Client();
  json ready = WaitForReady(*client, [](const json& b) { return b["workers"]["idle"] == 2; });
  ASSERT_EQ(DeploySample(*client, "mnist_cnn", "cnn")->status, 201);
  // Deploy validation used (and discarded) a worker; the pool is back to two.
  ready = WaitForReady(*client, [](const json& b) {
    return b["workers"]["idle"] == 2 && b["workers"]["bound"] == 0;
  });
  ASSERT_EQ(ready["workers"]["idle"], 2) << ready;
  const int live_before = ready["workers"]["live"];
  std::vector<float> pixels(784, 0.25f);
  auto cold = InvokeJson(*client, "cnn", {{"input", pixels}});
  ASSERT_EQ(cold->status, 200) << cold->body;
  const json split = json::parse(cold->body)["timings_us"]["start"];
  // A pre-initialized worker is taken at once, then the library is loaded into it.
  EXPECT_LT(split["acquire"].get<double>(), 50000) << split;
  EXPECT_GT(split["library"].get<double>(), 0) << split;
  ready = WaitForReady(*client, [&](const json& b) {
    return b["workers"]["idle"] == 2 && b["workers"]["live"] == live_before + 1;
  });
  EXPECT_EQ(ready["workers"]["idle"], 2) << ready;
  EXPECT_EQ(ready["workers"]["live"], live_before + 1) << ready;
}

// CPU time is a budget: a worker past it is replaced once its instances are idle, and no
// run is killed for it.
TEST(Isolation, AWorkerPastItsCpuBudgetIsReplacedWhenIdle) {
  TestGatewayOptions options = ProcessOptions();
  options.cpu_seconds_budget = 1;
  options.scheduler.invoke_timeout = std::chrono::milliseconds(10000);
  TestGateway gw(options);
  auto client = gw.Client();
  ASSERT_EQ(
      DeployMultipart(*client, "burn", TestManifest({"burn_then_copy"}, 4), TestLibraryBytes(), "")
          ->status,
      201);
  const json before = json::parse(client->Get("/v1/workers")->body)["workers"];
  ASSERT_EQ(before.size(), 1u);
  auto burnt = InvokeBinary(*client, "burn", BytesOf(std::vector<uint32_t>{1500, 0, 0, 0}));
  ASSERT_TRUE(burnt);
  EXPECT_EQ(burnt->status, 200) << burnt->body;  // the run itself is never cut short
  json ready;
  for (int i = 0; i < 100; ++i) {
    ready = json::parse(client->Get("/readyz")->body);
    if (ready["workers"]["evictions"].value("cpu_budget", 0) > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(ready["workers"]["evictions"].value("cpu_budget", 0), 1) << ready;
  auto next = InvokeBinary(*client, "burn", BytesOf(std::vector<uint32_t>{0, 0, 0, 0}));
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200) << next->body;
  EXPECT_EQ(next->get_header_value("X-Kchain-Start"), "cold");
  const json after = json::parse(client->Get("/v1/workers")->body)["workers"];
  ASSERT_EQ(after.size(), 1u);
  EXPECT_NE(after[0]["pid"], before[0]["pid"]);
}

TEST(Isolation, AWorkerKilledWhileIdleDoesNotFailTheNextInvocation) {
  TestGateway gw(ProcessOptions());
  auto client = gw.Client();
  const std::string manifest = R"({"chain": [{"kernel": "report_pid", "grid": 1, "block": 1}],
      "input": {"dtype": "uint8", "shape": [4]}, "output": {"dtype": "int32", "shape": [1]}})";
  ASSERT_EQ(DeployMultipart(*client, "pid", manifest, TestLibraryBytes(), "")->status, 201);
  auto first = InvokeBinary(*client, "pid", std::string(4, '\0'));
  ASSERT_EQ(first->status, 200);
  const int32_t pid = VectorOf<int32_t>(first->body)[0];
  EXPECT_EQ(VectorOf<int32_t>(InvokeBinary(*client, "pid", std::string(4, '\0'))->body)[0], pid);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto next = InvokeBinary(*client, "pid", std::string(4, '\0'));
  ASSERT_EQ(next->status, 200) << next->body;
  EXPECT_EQ(next->get_header_value("X-Kchain-Start"), "cold");
  EXPECT_NE(VectorOf<int32_t>(next->body)[0], pid);
}

// --worker-device-connections reaches every worker's command line, and a worker refuses a
// count CUDA would not take (it exits 2 before it opens any device).
TEST(Isolation, WorkersGetTheirWorkQueueCountAndRefuseBadOnes) {
  for (const char* bad : {"0", "33", "-1", "two", "", "2x", " 2", "99999999999999999999999"}) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      const int devnull = ::open("/dev/null", O_WRONLY);
      ::dup2(devnull, 2);
      ::execl(KCHAIN_WORKER_BINARY, "kchain-worker", "--device-connections", bad,
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status)) << bad;
    EXPECT_EQ(WEXITSTATUS(status), 2) << "'" << bad << "'";
  }
  TestGatewayOptions options = ProcessOptions();
  options.device_connections = 2;
  TestGateway gw(options);
  auto client = gw.Client();
  const std::string manifest = R"({"chain": [{"kernel": "report_pid", "grid": 1, "block": 1}],
      "input": {"dtype": "uint8", "shape": [4]}, "output": {"dtype": "int32", "shape": [1]}})";
  ASSERT_EQ(DeployMultipart(*client, "pid", manifest, TestLibraryBytes(), "")->status, 201);
  auto res = InvokeBinary(*client, "pid", std::string(4, '\0'));
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const int32_t pid = VectorOf<int32_t>(res->body)[0];
  std::ifstream file("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  const std::string cmdline((std::istreambuf_iterator<char>(file)), {});
  const std::string flag = std::string("--device-connections") + '\0' + "2" + '\0';
  EXPECT_NE(cmdline.find(flag), std::string::npos) << cmdline;
}

// The control-page handshake: runs posted there while the worker spins, runs sent through
// the socket after it stopped, park and wake in between, and a crash; with either spin.
void CheckSpinningWorkersStayCorrect(bool spin_yield) {
  TestGatewayOptions options = ProcessOptions();
  options.request_spin_us = 300;
  options.spin_yield = spin_yield;
  TestGateway gw(options);
  auto client = gw.Client();
  ASSERT_EQ(DeployMultipart(*client, "echo", MisbehaveManifest(), TestLibraryBytes(), "")->status,
            201);
  for (uint32_t i = 0; i < 400; ++i) {
    const std::vector<uint32_t> input = {kBehave, i, i * 3, i * 7};
    auto res = InvokeBinary(*client, "echo", BytesOf(input));
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << i << ": " << res->body;
    ASSERT_EQ(VectorOf<uint32_t>(res->body), input) << i;
    if (i % 50 == 25) {
      // Let the worker stop spinning, so that the next run goes through the socket.
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (i % 100 == 60) {
      ASSERT_EQ(client->Post("/v1/functions/echo/park")->status, 200);
    }
  }
  auto crash = InvokeBinary(*client, "echo", Mode(kSegfault));
  EXPECT_EQ(crash->status, 502);
  auto after = InvokeBinary(*client, "echo", Mode(kBehave));
  ASSERT_EQ(after->status, 200) << after->body;
}

TEST(Isolation, WorkersSpinningForRequestsStayCorrect) { CheckSpinningWorkersStayCorrect(false); }

TEST(Isolation, WorkersYieldingForRequestsStayCorrect) { CheckSpinningWorkersStayCorrect(true); }

TEST(Isolation, KernelErrorsNameTheStoredLibraryNotTheWorkersCopy) {
  TestGateway gw(ProcessOptions());
  auto client = gw.Client();
  ASSERT_EQ(DeployMultipart(*client, "fails", TestManifest({"noop", "report_error"}, 4),
                            TestLibraryBytes(), "")
                ->status,
            201);
  auto res = InvokeBinary(*client, "fails", std::string(16, '\0'));
  ASSERT_EQ(res->status, 502);
  const std::string message = ErrorMessage(res);
  EXPECT_EQ(message.find("/proc/self/fd"), std::string::npos) << message;
  EXPECT_NE(message.find("library 'tenants/default/functions/fails/v1/kernel.so'"),
            std::string::npos)
      << message;
}

TEST(Isolation, ALibraryThatCrashesWhileLoadingIsRejectedAtDeploy) {
  TestGateway gw(ProcessOptions());
  auto client = gw.Client();
  // A truncated ELF is refused by the loader's whole-file check inside the worker (dlopen
  // would map it past its end), which must come back as a clean 400.
  auto res =
      DeployMultipart(*client, "bad", MisbehaveManifest(), TestLibraryBytes().substr(0, 300), "");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400) << res->body;
  EXPECT_NE(ErrorMessage(res).find("truncated"), std::string::npos) << ErrorMessage(res);
  EXPECT_EQ(client->Get("/healthz")->status, 200);
}

// A cold start's worker that dies while loading a library that was validated at deploy is
// not the client's fault: killed from outside (SIGKILL) it is 503, crashed by the library's
// constructor 502; never 400 blaming a valid library.
TEST(Isolation, AWorkerThatDiesLoadingAColdStartIsNotBlamedOnTheClient) {
  const std::string dir = FreshDir("constructor");
  const std::string marker = dir + "/marker";
  ::setenv("KCHAIN_TEST_CONSTRUCTOR_MARKER", marker.c_str(), 1);  // workers inherit it
  // One worker per instance: every cold start loads the library into a fresh worker. (With
  // the tenant scope the deploy already loaded it into the tenant's worker.)
  TestGatewayOptions options = ProcessOptions();
  options.worker_scope = WorkerScope::kInstance;
  TestGateway gw(options);
  auto client = gw.Client();
  ASSERT_EQ(DeployMultipart(*client, "ctor", TestManifest({"copy_ticks"}, 4),
                            TestLibraryBytes("test_constructor_host"), "")
                ->status,
            201);
  auto with_marker = [&](const char* what) {
    std::ofstream(marker) << what;
    auto res = InvokeBinary(*client, "ctor", std::string(16, '\0'));
    std::filesystem::remove(marker);
    return res;
  };
  auto killed = with_marker("kill");
  ASSERT_TRUE(killed);
  EXPECT_EQ(killed->status, 503) << killed->body;
  EXPECT_EQ(ErrorCode(killed), "unavailable");
  EXPECT_NE(ErrorMessage(killed).find("SIGKILL"), std::string::npos) << ErrorMessage(killed);
  auto crashed = with_marker("segv");
  ASSERT_TRUE(crashed);
  EXPECT_EQ(crashed->status, 502) << crashed->body;
  EXPECT_EQ(ErrorCode(crashed), "kernel_error");
  EXPECT_NE(ErrorMessage(crashed).find("SIGSEGV"), std::string::npos) << ErrorMessage(crashed);
  auto fine = InvokeBinary(*client, "ctor", std::string(16, '\0'));
  ASSERT_TRUE(fine);
  EXPECT_EQ(fine->status, 200) << fine->body;
  ::unsetenv("KCHAIN_TEST_CONSTRUCTOR_MARKER");
}

// A library's code controls everything its worker writes. Forged, short, out-of-range and
// flooding messages, and a control page scribbled over by a thread, must never crash the
// gateway: the worker is killed as a protocol violation (or the reply is used when it is
// well-formed), the invocation gets a clean status, and everyone else is served.
//
// With one worker per function the CNN never shares a worker with the hostile code and is
// never disturbed; with the tenant scope it shares the tenant's worker (the tenant's own
// fault domain), so it may lose that worker (a 5xx, never a 4xx) and is served again.
TEST(Isolation, HostileLibrariesThatForgeWorkerMessagesCannotCrashTheGateway) {
  for (const auto& [scope, reply_spin_us] :
       {std::pair{WorkerScope::kFunction, 0}, std::pair{WorkerScope::kFunction, 200},
        std::pair{WorkerScope::kTenant, 200}}) {
    SCOPED_TRACE(std::string(WorkerScopeName(scope)) + " scope, reply spin " +
                 std::to_string(reply_spin_us) + " us");
    TestGatewayOptions options = ProcessOptions();
    options.reply_spin_us = reply_spin_us;
    options.worker_scope = scope;
    TestGateway gw(options);
    auto client = gw.Client();
    ASSERT_EQ(DeploySample(*client, "mnist_cnn", "cnn")->status, 201);

    // Forged while loading, at deploy: the library is refused.
    auto forged_load = DeployMultipart(*client, "forger", TestManifest({"noop"}, 4),
                                       TestLibraryBytes("test_hostile_on_load_host"), "");
    ASSERT_TRUE(forged_load);
    EXPECT_EQ(forged_load->status, 400) << forged_load->body;
    EXPECT_NE(ErrorMessage(forged_load).find("broke the worker protocol"), std::string::npos)
        << ErrorMessage(forged_load);

    for (const char* kernel : {"forge_empty_error", "forge_bad_ran", "flood_socket",
                               "scribble_control_page", "report_garbage_error"}) {
      SCOPED_TRACE(kernel);
      ASSERT_EQ(DeployMultipart(*client, kernel, TestManifest({kernel}, 4),
                                TestLibraryBytes("test_hostile_host"), "")
                    ->status,
                201);
      for (int i = 0; i < 6; ++i) {
        auto res = InvokeBinary(*client, kernel, std::string(16, '\0'));
        ASSERT_TRUE(res) << "no response: the gateway is down";
        // Its own invocation may fail, timing out included (a worker that scribbles over
        // its reply never gives one), but always with a clean 5xx.
        EXPECT_TRUE(res->status == 200 || res->status == 502 || res->status == 503 ||
                    res->status == 504)
            << res->status << " " << res->body.substr(0, 300);
        if (res->status != 200) {
          EXPECT_FALSE(ErrorCode(res).empty()) << res->body.substr(0, 300);
          // Whatever the worker wrote, what reaches the client is bounded and has no control
          // characters.
          const std::string message = ErrorMessage(res);
          EXPECT_LT(message.size(), 8192u);
          for (char c : message)
            EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t');
        }
        auto cnn = InvokeBinary(*client, "cnn", std::string(3136, '\0'));
        ASSERT_TRUE(cnn);
        if (scope == WorkerScope::kFunction) {
          // Served by another worker: never disturbed.
          EXPECT_EQ(cnn->status, 200) << cnn->body.substr(0, 300);
        } else {
          EXPECT_TRUE(cnn->status == 200 || cnn->status == 502 || cnn->status == 503)
              << cnn->status << " " << cnn->body.substr(0, 300);
        }
      }
    }
    // Whatever happened, the CNN is served again.
    auto cnn = InvokeBinary(*client, "cnn", std::string(3136, '\0'));
    ASSERT_TRUE(cnn);
    if (cnn->status != 200) cnn = InvokeBinary(*client, "cnn", std::string(3136, '\0'));
    EXPECT_EQ(cnn->status, 200) << cnn->body.substr(0, 300);
    EXPECT_EQ(client->Get("/healthz")->status, 200);
    EXPECT_EQ(client->Get("/readyz")->status, 200);
    EXPECT_EQ(client->Get("/metrics")->status, 200);
  }
}

}  // namespace
}  // namespace kchain::gateway::testing
