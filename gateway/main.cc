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
#include <thread>

#include "gateway/config.h"
#include "gateway/executor.h"
#include "gateway/files.h"
#include "gateway/http_server.h"
#include "gateway/log.h"
#include "gateway/service.h"

namespace {

using namespace kchain::gateway;

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

  auto device = OpenDevice(config);
  if (!device.ok()) {
    logger.Error("cannot open the device: " + device.status().ToString());
    return 1;
  }
  kchain::InstanceOptions instance_options;
  instance_options.stage_timing_period = config.stage_timing_period;

  ServiceOptions options;
  options.data_dir = config.data_dir;
  options.scheduler.max_instances_per_function = config.max_instances;
  options.scheduler.max_queue_per_function = config.max_queue;
  options.scheduler.invoke_timeout = std::chrono::milliseconds(config.invoke_timeout_ms);
  options.scheduler.parked_ttl = std::chrono::seconds(config.parked_ttl_s);
  options.scheduler.memory_budget_bytes = config.memory_budget != 0
                                              ? config.memory_budget
                                              : (*device)->limits().total_memory_bytes / 10 * 9;
  const std::string device_name = (*device)->name();
  auto service = Service::Create(options, MakeInProcessExecutor(*device, instance_options),
                                 [&logger](const std::string& line) { logger.Info(line); });
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

  char line[512];
  std::snprintf(line, sizeof line,
                "kchain-gateway %s listening on http://%s:%d (device: %s; data: %s; %zu "
                "function(s); %d threads; memory budget %llu bytes; isolation: none)",
                KCHAIN_VERSION, config.host.c_str(), *port, device_name.c_str(),
                (*service)->options().data_dir.c_str(), (*service)->List(std::nullopt).size(),
                http.threads,
                static_cast<unsigned long long>(options.scheduler.memory_budget_bytes));
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
