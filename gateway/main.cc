// kchain-gateway: serves kchain functions over HTTP.
//
//   kchain-gateway [--config FILE] [--listen HOST:PORT] [--data-dir DIR] [--device auto|cuda|host]
//                  ...                                  (kchain-gateway --help for all)
//
// Starts with an embedded default configuration (127.0.0.1:8080, ./kchain-data, device auto).
// SIGTERM or SIGINT stops it gracefully: it stops accepting, lets in-flight requests finish,
// then exits 0.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <thread>

#include "gateway/core/config.h"
#include "gateway/core/data_dir.h"
#include "gateway/core/files.h"
#include "gateway/core/log.h"
#include "gateway/core/service.h"
#include "gateway/exec/executor.h"
#include "gateway/exec/process_executor.h"
#include "gateway/http/auth.h"
#include "gateway/http/http_server.h"

namespace {

using namespace kchain::gateway;

// kchain-worker is installed beside kchain-gateway.
std::string WorkerNextToUs() {
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return "kchain-worker";
  self[n] = '\0';
  return (std::filesystem::path(self).parent_path() / "kchain-worker").string();
}

kchain::StatusOr<std::shared_ptr<kchain::Device>> OpenDevice(const GatewayConfig& config) {
  if (config.device == "auto") {
    if (kchain::Device::CudaDeviceCount() > config.device_ordinal) {
      return kchain::Device::Open(kchain::DeviceKind::kCuda, config.device_ordinal);
    }
    return kchain::Device::Open(kchain::DeviceKind::kHost);
  }
  KCHAIN_ASSIGN_OR_RETURN(auto kind, kchain::ParseDeviceKind(config.device));
  return kchain::Device::Open(kind, kind == kchain::DeviceKind::kCuda ? config.device_ordinal : 0);
}

int Run(int argc, char** argv) {
  GatewayConfig config;
  bool exit_now = false;
  kchain::Status flags =
      ParseFlags(std::vector<std::string>(argv + 1, argv + argc), &config, &exit_now);
  if (!flags.ok()) {
    std::fprintf(stderr, "kchain-gateway: %s\n", flags.message().c_str());
    return 2;
  }
  if (exit_now) return 0;
  Logger logger(config.log_level);

  // Signals are taken by one thread with sigwait; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::optional<ApiKeys> keys;
  if (!config.api_keys.empty()) {
    auto loaded = ApiKeys::LoadFile(config.api_keys);
    if (!loaded.ok()) {
      logger.Error("cannot load API keys: " + loaded.status().message());
      return 1;
    }
    keys = std::move(*loaded);
  }

  // The data directory first: locked for this gateway alone, cleaned of what a crash left,
  // before workers (whose folders live in it) start.
  auto data_dir_lock = DataDirLock::Acquire(config.data_dir);
  if (!data_dir_lock.ok()) {
    logger.Error(data_dir_lock.status().message());
    return 1;
  }
  if (data_dir_lock->cleaned() > 0) {
    logger.Info("removed " + std::to_string(data_dir_lock->cleaned()) +
                " worker folder(s) left by a gateway that did not stop cleanly");
  }

  kchain::InstanceOptions instance_options;
  instance_options.stage_timing_period = config.stage_timing_period;
  std::unique_ptr<Executor> executor;
  if (config.isolation == "none") {
    auto device = OpenDevice(config);
    if (!device.ok()) {
      logger.Error("cannot open the device: " + device.status().ToString());
      return 1;
    }
    executor = MakeInProcessExecutor(*device, instance_options);
  } else {
    ProcessExecutorOptions process;
    process.launch.binary = config.worker_path.empty() ? WorkerNextToUs() : config.worker_path;
    process.launch.device = config.device;
    process.launch.ordinal = config.device_ordinal;
    process.launch.workdir_root = config.data_dir + "/workers";
    process.launch.sandbox = config.worker_sandbox;
    // CPU time is recycled, not a kill: a shared worker under load spends it in hours.
    process.launch.cpu_seconds = 0;
    process.cpu_seconds_budget = config.worker_cpu_seconds;
    // RLIMIT_AS backstop for host workers: well above the watched memory limit.
    process.launch.address_space_headroom =
        config.worker_memory_limit == 0 ? 0 : 4 * config.worker_memory_limit + (uint64_t{1} << 30);
    process.scope = *ParseWorkerScope(config.worker_scope);  // validated by the flag
    process.workers_per_scope = config.workers_per_tenant;
    process.idle_worker_ttl = std::chrono::seconds(config.idle_worker_ttl_s);
    process.prestarted_workers = config.prestarted_workers;
    process.max_workers = config.max_workers;
    process.device_budget_bytes = config.memory_budget;  // 0: 90% of the device, as below
    process.memory_limit_bytes = config.worker_memory_limit;
    process.run_timeout = std::chrono::milliseconds(config.invoke_timeout_ms);
    process.reply_spin = std::chrono::microseconds(config.worker_reply_spin_us);
    process.request_spin = std::chrono::microseconds(config.worker_request_spin_us);
    process.reply_spinners = static_cast<int>(config.worker_reply_spinners);
    process.spin_yield = config.worker_spin == "yield";
    process.launch.gpu_wait = config.worker_gpu_wait;
    process.launch.device_connections = config.worker_device_connections;
    process.stage_timing_period = config.stage_timing_period;
    logger.Info("starting worker processes (" + process.launch.binary + ")");
    auto made = MakeProcessExecutor(process);
    if (!made.ok()) {
      logger.Error("cannot start workers: " + made.status().message());
      return 1;
    }
    executor = std::move(*made);
  }

  ServiceOptions options;
  options.data_dir = config.data_dir;
  options.scheduler.max_instances_per_function = config.max_instances;
  options.scheduler.max_queue_per_function = config.max_queue;
  options.scheduler.invoke_timeout = std::chrono::milliseconds(config.invoke_timeout_ms);
  options.scheduler.parked_ttl = std::chrono::seconds(config.parked_ttl_s);
  options.scheduler.memory_budget_bytes =
      config.memory_budget != 0 ? config.memory_budget : executor->device_memory_total() / 10 * 9;
  const std::string device_name = executor->device_name();
  const ExecutorStats stats = executor->Stats();
  auto service = Service::Create(options, std::move(executor), [&logger](const std::string& line) {
    // The service marks its warnings and errors by prefix.
    if (line.rfind("warning: ", 0) == 0) return logger.Warning(line.substr(9));
    if (line.rfind("error: ", 0) == 0) return logger.Error(line.substr(7));
    logger.Info(line);
  });
  if (!service.ok()) {
    logger.Error("cannot start: " + service.status().ToString());
    return 1;
  }

  HttpOptions http;
  http.host = config.host;
  http.port = config.port;
  http.threads = config.threads != 0
                     ? config.threads
                     : std::max(16, 4 * static_cast<int>(std::thread::hardware_concurrency()));
  http.max_body = config.max_body;
  http.keys = keys ? &*keys : nullptr;
  HttpServer server(service->get(), &logger, http);
  auto port = server.Bind();
  if (!port.ok()) {
    logger.Error(port.status().message());
    return 1;
  }

  if (!config.port_file.empty()) {
    kchain::Status written =
        WriteFileAtomic(config.port_file, AsBytes(std::to_string(*port) + "\n"));
    if (!written.ok()) {
      logger.Error("cannot write the port file: " + written.ToString());
      return 1;
    }
  }

  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    logger.Info(std::string("received ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") + ": draining " +
                std::to_string(server.in_flight()) + " in-flight request(s)");
    (*service)->BeginShutdown();
    server.Stop();
  });

  if (!keys) {
    logger.Warning(
        "NO API KEYS CONFIGURED (--api-keys): development mode. Anyone who can reach this port "
        "can deploy, run and delete functions, as an admin of the tenant 'default'. Do not "
        "expose it beyond this machine.");
  } else {
    logger.Info("authentication: " + std::to_string(keys->size()) + " API key(s) for " +
                std::to_string(keys->tenant_count()) + " tenant(s)");
  }
  const std::string budget = options.scheduler.memory_budget_bytes == 0
                                 ? std::string("none")
                                 : std::to_string(options.scheduler.memory_budget_bytes) + " bytes";
  char line[1024];
  std::snprintf(line, sizeof line,
                "kchain-gateway %s listening on http://%s:%d (device: %s; data: %s; %zu "
                "function(s); %d threads; memory budget %s; isolation: %s; sandbox: %s)",
                KCHAIN_VERSION, config.host.c_str(), *port, device_name.c_str(),
                (*service)->options().data_dir.c_str(), (*service)->List(std::nullopt).size(),
                http.threads, budget.c_str(), stats.isolation.c_str(), stats.sandbox.c_str());
  logger.Info(line);
  server.Serve();
  // Serve returns after a signal; if it returned on its own, stop the signal thread too.
  pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
  service->reset();
  logger.Info("kchain-gateway stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
