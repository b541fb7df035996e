// Gateway configuration: sizes, flags, config files.
#include "gateway/core/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace kchain::gateway {
namespace {

TEST(Config, ParsesSizes) {
  EXPECT_EQ(*ParseSize("123"), 123u);
  EXPECT_EQ(*ParseSize("64KiB"), 64u << 10);
  EXPECT_EQ(*ParseSize("512MiB"), 512u << 20);
  EXPECT_EQ(*ParseSize("8GiB"), uint64_t{8} << 30);
  EXPECT_EQ(*ParseSize("2g"), uint64_t{2} << 30);
  EXPECT_EQ(*ParseSize("1TB"), uint64_t{1} << 40);
  for (const char* bad :
       {"", "GiB", "12XB", "-5", "1.5GiB", "99999999999999999999", "16777216TiB"}) {
    EXPECT_FALSE(ParseSize(bad).ok()) << bad;
  }
}

TEST(Config, FlagsOverrideTheConfigFile) {
  const auto path = std::filesystem::temp_directory_path() / "kchain_config_test.json";
  std::ofstream(path) << R"({"port": 9000, "memory_budget": "8GiB", "device": "host",
                            "max-queue": 5, "log-level": "warning"})";
  GatewayConfig config;
  bool exit_now = false;
  Status s = ParseFlags({"--config", path.string(), "--port", "9100", "--listen=0.0.0.0:9200",
                         "--max-instances", "2"},
                        &config, &exit_now);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_FALSE(exit_now);
  EXPECT_EQ(config.host, "0.0.0.0");
  EXPECT_EQ(config.port, 9200);  // the last flag wins
  EXPECT_EQ(config.memory_budget, uint64_t{8} << 30);
  EXPECT_EQ(config.device, "host");
  EXPECT_EQ(config.max_queue, 5);
  EXPECT_EQ(config.max_instances, 2);
  EXPECT_EQ(config.log_level, LogLevel::kWarning);
}

TEST(Config, RejectsBadFlagsAndFiles) {
  GatewayConfig config;
  bool exit_now = false;
  EXPECT_NE(ParseFlags({"--nope", "1"}, &config, &exit_now).message().find("unknown flag"),
            std::string::npos);
  EXPECT_NE(ParseFlags({"--port"}, &config, &exit_now).message().find("needs a value"),
            std::string::npos);
  EXPECT_NE(ParseFlags({"--port", "70000"}, &config, &exit_now).message().find("outside"),
            std::string::npos);
  EXPECT_NE(
      ParseFlags({"--device", "tpu"}, &config, &exit_now).message().find("auto, cuda or host"),
      std::string::npos);
  EXPECT_NE(ParseFlags({"stray"}, &config, &exit_now).message().find("unexpected argument"),
            std::string::npos);
  EXPECT_EQ(ParseFlags({"--config", "/nonexistent.json"}, &config, &exit_now).code(),
            StatusCode::kNotFound);
  const auto path = std::filesystem::temp_directory_path() / "kchain_config_bad.json";
  std::ofstream(path) << R"({"prot": 1})";
  EXPECT_NE(LoadConfigFile(path.string(), &config).message().find("unknown key 'prot'"),
            std::string::npos);
  std::ofstream(path) << "{not json";
  EXPECT_NE(LoadConfigFile(path.string(), &config).message().find("not valid JSON"),
            std::string::npos);
}

TEST(Config, ReplySpinnersDefaultToNoCapAndAreBounded) {
  GatewayConfig config;
  EXPECT_EQ(config.worker_reply_spinners, 0);
  bool exit_now = false;
  ASSERT_TRUE(ParseFlags({"--worker-reply-spinners", "3"}, &config, &exit_now).ok());
  EXPECT_EQ(config.worker_reply_spinners, 3);
  for (const char* bad : {"-1", "4097", "two"}) {
    EXPECT_FALSE(ParseFlags({"--worker-reply-spinners", bad}, &config, &exit_now).ok()) << bad;
  }
  EXPECT_EQ(config.worker_reply_spinners, 3);  // a rejected value changes nothing
}

TEST(Config, WorkerWaitModesAcceptOnlyTheirNames) {
  GatewayConfig config;
  EXPECT_EQ(config.worker_spin, "yield");
  EXPECT_EQ(config.worker_gpu_wait, "auto");
  bool exit_now = false;
  ASSERT_TRUE(
      ParseFlags({"--worker-spin", "pause", "--worker-gpu-wait", "block"}, &config, &exit_now)
          .ok());
  EXPECT_EQ(config.worker_spin, "pause");
  EXPECT_EQ(config.worker_gpu_wait, "block");
  for (const char* bad : {"", "Yield", "spin", "sleep"}) {
    EXPECT_FALSE(ParseFlags({"--worker-spin", bad}, &config, &exit_now).ok()) << bad;
  }
  for (const char* bad : {"", "Block", "pause", "busy"}) {
    const Status status = ParseFlags({"--worker-gpu-wait", bad}, &config, &exit_now);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(config.worker_spin, "pause");  // a rejected value changes nothing
  EXPECT_EQ(config.worker_gpu_wait, "block");
}

TEST(Config, WorkerDeviceConnectionsAreCudasRange) {
  GatewayConfig config;
  EXPECT_EQ(config.worker_device_connections, 2);
  bool exit_now = false;
  ASSERT_TRUE(ParseFlags({"--worker-device-connections", "0"}, &config, &exit_now).ok());
  EXPECT_EQ(config.worker_device_connections, 0);  // CUDA's own
  ASSERT_TRUE(ParseFlags({"--worker-device-connections", "32"}, &config, &exit_now).ok());
  EXPECT_EQ(config.worker_device_connections, 32);
  for (const char* bad : {"-1", "33", "two", ""}) {
    const Status status = ParseFlags({"--worker-device-connections", bad}, &config, &exit_now);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(config.worker_device_connections, 32);  // a rejected value changes nothing
}

TEST(Config, UsageListsEveryFlag) {
  const std::string usage = Usage();
  for (const char* flag : {"--listen", "--data-dir", "--device", "--threads", "--memory-budget",
                           "--max-instances", "--max-queue", "--invoke-timeout-ms",
                           "--parked-ttl-s", "--max-body", "--log-level", "--config"}) {
    EXPECT_NE(usage.find(flag), std::string::npos) << flag;
  }
}

}  // namespace
}  // namespace kchain::gateway
