// Gateway configuration: defaults, then a JSON config file, then command-line flags.
#ifndef KCHAIN_GATEWAY_CORE_CONFIG_H_
#define KCHAIN_GATEWAY_CORE_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/core/log.h"
#include "kchain/status.h"

namespace kchain::gateway {

struct GatewayConfig {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string data_dir = "kchain-data";
  std::string device = "auto";  // auto, cuda, host
  int device_ordinal = 0;
  int threads = 0;             // HTTP worker threads; 0: 4 per core, at least 16
  uint64_t memory_budget = 0;  // device bytes for resident instances; 0: 90% of the device
  int max_instances = 4;       // per function
  int max_queue = 64;          // per function
  int64_t invoke_timeout_ms = 30000;
  int64_t parked_ttl_s = 600;
  uint64_t max_body = uint64_t{1} << 30;  // largest request body
  uint32_t stage_timing_period = 64;
  LogLevel log_level = LogLevel::kInfo;
  std::string port_file;  // when set, the bound port is written there once listening

  // Isolation: "process" runs every instance in a sandboxed kchain-worker process; "none"
  // runs them inside the gateway.
  std::string isolation = "process";
  std::string worker_path;              // empty: kchain-worker next to the gateway's own executable
  std::string worker_scope = "tenant";  // tenant, function or instance: what one worker hosts
  int workers_per_tenant = 1;           // workers one scope may spread its instances over
  int prestarted_workers = 2;
  int max_workers = 256;
  int64_t idle_worker_ttl_s = 600;  // a bound worker with no instance left is retired then
  uint64_t worker_memory_limit = uint64_t{2} << 30;  // host memory above the worker's baseline
  uint64_t worker_cpu_seconds = 3600;
  bool worker_sandbox = true;
  int64_t worker_reply_spin_us = 200;
  int64_t worker_request_spin_us = 50;
  int64_t worker_reply_spinners = 0;     // 0: no cap (spins yield the core)
  std::string worker_spin = "yield";     // pause or yield: how the reply and request spins wait
  std::string worker_gpu_wait = "auto";  // how a worker waits for the GPU: auto|spin|yield|block
  int worker_device_connections = 2;     // hardware work queues per worker context; 0: CUDA's
  std::string api_keys;                  // API key file; empty: development mode, no authentication
};

// Parses "123", "64KiB", "512MiB", "8GiB", "1TiB" (also K, M, G, T and KB, MB, GB, TB, all
// powers of 1024). kInvalidArgument otherwise.
StatusOr<uint64_t> ParseSize(std::string_view text);

// Reads a JSON config file whose keys are the flag names with '-' or '_' (e.g.
// {"port": 9000, "memory-budget": "8GiB"}) into `config`. Unknown keys are errors.
Status LoadConfigFile(const std::string& path, GatewayConfig* config);

// Applies command-line flags (argv[1..]) over `config`; --config FILE is read first,
// wherever it appears. Sets *exit_now (and returns OK) for --help and --version, after
// printing them.
Status ParseFlags(const std::vector<std::string>& args, GatewayConfig* config, bool* exit_now);

std::string Usage();

}  // namespace kchain::gateway

#endif  // KCHAIN_GATEWAY_CORE_CONFIG_H_
