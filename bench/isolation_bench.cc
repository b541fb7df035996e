// The cost of process isolation on the hot path: the CNN sample invoked hot through a gateway
// whose instances run in the gateway (--isolation=none) and through one whose instances run in
// kchain-worker processes (--isolation=process), same device, same process, interleaved
// rounds. Measured at two levels:
//  - executor: take an instance, copy the input in, run, give it back (what isolation adds:
//    the socket round trip to the worker);
//  - HTTP: a keep-alive client's binary invoke, end to end on loopback.
//
//   kchain_isolation_bench [--rounds N] [--calls N] [--device auto|cuda|host] [--json FILE]
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "gateway/core/files.h"
#include "gateway/core/service.h"
#include "gateway/exec/process_executor.h"
#include "gateway/http/http_server.h"
#include "kchain/manifest.h"

namespace {

using namespace kchain::gateway;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Stats {
  double median = 0, p90 = 0, p99 = 0;
};

Stats Summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))]; };
  return {at(0.5), at(0.9), at(0.99)};
}

struct Setup {
  std::string isolation;  // none, or process
  std::string label;
  int request_spin_us = 0;
  std::unique_ptr<Service> service;
  std::unique_ptr<HttpServer> server;
  std::thread thread;
  std::unique_ptr<httplib::Client> client;
  std::vector<double> executor_us, http_us;
};

kchain::Status Start(Setup* s, const std::string& device, const std::string& data_dir,
                     const Logger* logger) {
  std::unique_ptr<Executor> executor;
  kchain::InstanceOptions instance_options;
  if (s->isolation == "none") {
    auto opened = device == "auto" ? kchain::Device::OpenAuto()
                                   : kchain::Device::Open(*kchain::ParseDeviceKind(device));
    if (!opened.ok()) return opened.status();
    executor = MakeInProcessExecutor(*opened, instance_options);
  } else {
    ProcessExecutorOptions options;
    options.launch.binary = KCHAIN_WORKER_BINARY;
    options.launch.device = device;
    options.launch.workdir_root = data_dir + "/workers";
    options.request_spin = std::chrono::microseconds(s->request_spin_us);
    KCHAIN_ASSIGN_OR_RETURN(executor, MakeProcessExecutor(options));
  }
  ServiceOptions options;
  options.data_dir = data_dir;
  KCHAIN_ASSIGN_OR_RETURN(s->service, Service::Create(options, std::move(executor), nullptr));
  const std::string dir = std::string(KCHAIN_SAMPLES_BUILD_DIR) + "/mnist_cnn";
  KCHAIN_ASSIGN_OR_RETURN(auto manifest, kchain::LoadManifestFile(dir + "/manifest.json"));
  const auto kind = s->service->executor().device_kind();
  KCHAIN_ASSIGN_OR_RETURN(std::string lib_path, kchain::ManifestLibraryFor(manifest, kind));
  KCHAIN_ASSIGN_OR_RETURN(std::string library, kchain::ReadFileToString(lib_path));
  KCHAIN_ASSIGN_OR_RETURN(std::string weights, kchain::ReadFileToString(manifest.constants));
  KCHAIN_ASSIGN_OR_RETURN(std::string text, kchain::ReadFileToString(dir + "/manifest.json"));
  KCHAIN_RETURN_IF_ERROR(
      s->service->Deploy({"default", "cnn"}, text, AsBytes(library), AsBytes(weights)).status());
  HttpOptions http;
  http.port = 0;
  s->server = std::make_unique<HttpServer>(s->service.get(), logger, http);
  KCHAIN_ASSIGN_OR_RETURN(int port, s->server->Bind());
  s->thread = std::thread([s] { s->server->Serve(); });
  s->client = std::make_unique<httplib::Client>("127.0.0.1", port);
  s->client->set_keep_alive(true);
  s->client->set_tcp_nodelay(true);
  return kchain::Status();
}

void Stop(Setup* s) {
  s->service->BeginShutdown();
  s->server->Stop();
  s->thread.join();
  s->client.reset();
  s->server.reset();
  s->service.reset();
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 10, calls = 500;
  std::string device = "auto", json_path;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i];
    if (arg == "--rounds") rounds = std::atoi(argv[i + 1]);
    if (arg == "--calls") calls = std::atoi(argv[i + 1]);
    if (arg == "--device") device = argv[i + 1];
    if (arg == "--json") json_path = argv[i + 1];
  }
  Logger logger(LogLevel::kError);
  const auto root = std::filesystem::temp_directory_path() / "kchain_isolation_bench";
  std::filesystem::remove_all(root);
  constexpr int kSetups = 3;
  Setup setups[kSetups];
  setups[0].isolation = "none";
  setups[0].label = "none";
  setups[1].isolation = "process";
  setups[1].label = "process";
  setups[2].isolation = "process";
  setups[2].label = "process+spin";
  setups[2].request_spin_us = 200;
  for (auto& s : setups) {
    kchain::Status started = Start(&s, device, (root / s.label).string(), &logger);
    if (!started.ok()) {
      std::fprintf(stderr, "isolation=%s: %s\n", s.label.c_str(), started.ToString().c_str());
      return 1;
    }
  }
  const std::string device_name = setups[0].service->executor().device_name();
  const std::string image = [] {
    auto all = kchain::ReadFileToString(std::string(KCHAIN_SAMPLES_BUILD_DIR) +
                                        "/mnist_cnn/heldout_images.bin");
    return all.ok() ? all->substr(0, 3136) : std::string(3136, '\0');
  }();
  const kchain::gateway::FunctionKey key{"default", "cnn"};

  // Warm both up (cold start, graph capture), check they agree.
  std::string outputs[kSetups];
  for (int m = 0; m < kSetups; ++m) {
    for (int i = 0; i < 20; ++i) {
      auto res =
          setups[m].client->Post("/v1/functions/cnn/invoke", image, "application/octet-stream");
      if (!res || res->status != 200) {
        std::fprintf(stderr, "warm-up failed for %s\n", setups[m].label.c_str());
        return 1;
      }
      outputs[m] = res->body;
    }
  }
  if (outputs[0] != outputs[1] || outputs[0] != outputs[2]) {
    std::fprintf(stderr, "the two isolation modes disagree on the output\n");
    return 1;
  }

  for (int r = 0; r < rounds; ++r) {
    for (int m = 0; m < kSetups; ++m) {
      Setup& s = setups[m];
      for (int i = 0; i < calls; ++i) {
        const auto t0 = Clock::now();
        {
          auto lease = s.service->Acquire(key);  // the instance goes back at the scope's end
          if (!lease.ok()) return 1;
          std::memcpy(lease->instance().input_buffer().data(), image.data(), image.size());
          kchain::RunTimings timings;
          if (!lease->instance().Run(image.size(), &timings).ok()) return 1;
        }
        s.executor_us.push_back(
            std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      }
      for (int i = 0; i < calls; ++i) {
        const auto t0 = Clock::now();
        auto res = s.client->Post("/v1/functions/cnn/invoke", image, "application/octet-stream");
        if (!res || res->status != 200) return 1;
        s.http_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      }
    }
  }

  std::printf("Hot CNN invocation, isolation none vs process, on %s\n", device_name.c_str());
  std::printf(
      "(%d interleaved rounds x %d calls per setup and level; microseconds; process+spin:\n"
      " workers also spin 200 us for the next request)\n",
      rounds, calls);
  std::printf("  %-9s %-13s %10s %10s %10s %14s\n", "level", "isolation", "median", "p90", "p99",
              "vs none");
  json out = {{"device", device_name}, {"rounds", rounds}, {"calls", calls}};
  for (const char* level : {"executor", "http"}) {
    Stats stats[kSetups];
    for (int m = 0; m < kSetups; ++m) {
      stats[m] =
          Summarize(std::string(level) == "executor" ? setups[m].executor_us : setups[m].http_us);
      const double diff = stats[m].median - stats[0].median;
      std::printf("  %-9s %-13s %10.2f %10.2f %10.2f %+11.2f us\n", level, setups[m].label.c_str(),
                  stats[m].median, stats[m].p90, stats[m].p99, diff);
      out[level][setups[m].label] = {{"median_us", stats[m].median},
                                     {"p90_us", stats[m].p90},
                                     {"p99_us", stats[m].p99},
                                     {"minus_none_median_us", diff}};
    }
  }
  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (f != nullptr) {
      std::fputs(out.dump(2).c_str(), f);
      std::fclose(f);
    }
  }
  for (auto& s : setups) Stop(&s);
  return 0;
}
