// End-to-end benchmarks through real kchain-gateway processes, with the native CUDA baseline
// measured by this same process in the same run:
//   pyplover    PyPlover's tables: cold / warm / hot breakdown (load kernel, load constants,
//               run, overhead, total) for vecadd and the CNN, --isolation=process and none,
//               next to a native CUDA program (a fresh process per cold start).
//   latency     hot CNN latency distribution over keep-alive HTTP, binary and JSON paths.
//   throughput  requests/s and p99 against concurrency (1..256 clients) for the CNN and a
//               one-stage tiny chain, and the native baseline driven by as many threads.
//   payload     binary invokes of 1 MiB .. 256 MiB inputs (a copy kernel), effective GB/s,
//               against cudaMemcpy from pinned memory.
//   many        100 functions under a memory budget that holds only some; random order.
//   tenants     tenant workers (process isolation, the default scope): 1,000 functions of
//               one tenant (cold, then hot; device memory held), 300 tenants of 2 functions
//               in a random order (start types, workers retired), and containment: one
//               tenant's CNN at 8 clients while another's kernels fault.
// Every figure is summarised over several rounds: the median, with min and max as the spread.
// Writes one JSON document (bench/report.py turns it into the results file and plots).
//
//   kchain_load_bench --out FILE.json [--device auto|cuda|host] [--quick]
//                     [--sections pyplover,latency,throughput,payload,many,tenants]
//                     [--clients 1,8,64]   (the throughput section's concurrency levels)
//                     [--variant LABEL=FLAGS ...]   (more throughput rows: gateway flags
//                                                   after the shared ones, side by side)
//                     [--tenant-parts density,many_tenants,containment]
//                     [--tenant-calls N]   (many_tenants: calls per function, default 2)
//                     [--tenant-flags FLAGS]   (more gateway flags for the tenants section)
//                     [--gateway PATH] [--samples DIR] [--bench-kernels DIR]
#include <dlfcn.h>
#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kchain/device.h"
#include "kchain/manifest.h"
#ifdef KCHAIN_BENCH_CUDA
#include <cuda_runtime.h>

#include "native_cuda.h"
#endif

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
namespace fs = std::filesystem;

double MicrosSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

// ---------------------------------------------------------------------------------------------
// Statistics

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

// The median over rounds with the spread: {"median", "min", "max", "n"}.
json Spread(const std::vector<double>& values) {
  if (values.empty())
    return json{{"median", nullptr}, {"min", nullptr}, {"max", nullptr}, {"n", 0}};
  return json{{"median", Quantile(values, 0.5)},
              {"min", *std::min_element(values.begin(), values.end())},
              {"max", *std::max_element(values.begin(), values.end())},
              {"n", values.size()}};
}

json Percentiles(const std::vector<double>& v) {
  return json{{"p50", Quantile(v, 0.5)},
              {"p90", Quantile(v, 0.9)},
              {"p99", Quantile(v, 0.99)},
              {"p999", Quantile(v, 0.999)},
              {"mean", v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / v.size()},
              {"count", v.size()}};
}

// Per-round percentiles summarised across rounds: {"p50": spread, ...}.
json PercentilesOverRounds(const std::vector<std::vector<double>>& rounds) {
  json out;
  for (const auto& [key, q] : std::vector<std::pair<const char*, double>>{
           {"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"p999", 0.999}}) {
    std::vector<double> per_round;
    for (const auto& r : rounds) per_round.push_back(Quantile(r, q));
    out[key] = Spread(per_round);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Settings and files

struct Settings {
  std::string device = "auto";  // resolved to cuda or host in main()
  bool quick = false;
  std::set<std::string> sections = {"pyplover", "latency", "throughput",
                                    "payload",  "many",    "tenants"};
  std::string gateway = KCHAIN_GATEWAY_BINARY;
  std::string samples = KCHAIN_SAMPLES_BUILD_DIR;
  std::string bench_kernels = KCHAIN_BENCH_KERNELS_DIR;
  std::string out;
  fs::path scratch;
  // Counts (full / quick).
  int cold_reps() const { return quick ? 2 : 5; }
  int warm_reps() const { return quick ? 2 : 10; }
  int hot_reps() const { return quick ? 20 : 1000; }
  int latency_rounds() const { return quick ? 2 : 5; }
  int latency_calls() const { return quick ? 50 : 4000; }
  int throughput_rounds() const { return quick ? 1 : 3; }
  double throughput_seconds() const { return quick ? 0.2 : 0.6; }
  // --tenant-parts: which parts of the tenants section run (default all).
  std::set<std::string> tenant_parts = {"density", "many_tenants", "containment"};
  int tenant_calls = 2;  // --tenant-calls: many_tenants invokes each function this often
  std::vector<std::string> tenant_flags;  // --tenant-flags: after each tenants gateway's own
  std::vector<int> clients;               // --clients: the throughput section's concurrency levels
  // --variant LABEL=FLAGS: more gateways the throughput section measures side by side with
  // the process and none rows, e.g. "spin50=--isolation process --worker-request-spin-us 50".
  std::vector<std::pair<std::string, std::vector<std::string>>> variants;
  std::vector<int> concurrency() const {
    if (!clients.empty()) return clients;
    return quick ? std::vector<int>{1, 2, 4} : std::vector<int>{1, 2, 4, 8, 16, 32, 64, 128, 256};
  }
  std::vector<size_t> payload_sizes() const {
    const size_t mib = 1 << 20;
    return quick ? std::vector<size_t>{mib}
                 : std::vector<size_t>{mib, 4 * mib, 16 * mib, 64 * mib, 256 * mib};
  }
  int payload_reps() const { return quick ? 2 : 5; }
  int many_functions() const { return quick ? 10 : 100; }
  int many_resident() const { return quick ? 3 : 20; }
  int many_calls() const { return quick ? 40 : 2000; }
  int density_functions() const { return quick ? 20 : 1000; }
  int tenants() const { return quick ? 6 : 300; }
  double containment_seconds() const { return quick ? 0.5 : 3.0; }
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void Progress(const char* fmt, auto... args) {
  std::fprintf(stderr, fmt, args...);
  std::fputc('\n', stderr);
}

// A function to deploy: manifest text, library bytes, constants bytes, one input.
struct FunctionFiles {
  std::string manifest, library, constants, input;
  size_t out_bytes = 0;
  size_t device_bytes = 0;  // input + tmp + out + constants: what one instance holds
};

FunctionFiles SampleFiles(const Settings& s, const std::string& sample) {
  const std::string dir = s.samples + "/" + sample;
  auto manifest = kchain::LoadManifestFile(dir + "/manifest.json");
  if (!manifest.ok()) throw std::runtime_error(manifest.status().ToString());
  const auto kind = s.device == "cuda" ? kchain::DeviceKind::kCuda : kchain::DeviceKind::kHost;
  auto lib = kchain::ManifestLibraryFor(*manifest, kind);
  if (!lib.ok()) throw std::runtime_error(lib.status().ToString());
  FunctionFiles f;
  f.manifest = ReadFile(dir + "/manifest.json");
  f.library = ReadFile(*lib);
  f.constants = manifest->constants.empty() ? "" : ReadFile(manifest->constants);
  const auto& spec = manifest->spec;
  f.out_bytes = spec.out_bytes;
  f.device_bytes = spec.max_input_bytes + spec.tmp_bytes + spec.out_bytes + spec.constant_bytes;
  if (sample == "mnist_cnn") {
    f.input = ReadFile(dir + "/heldout_images.bin").substr(0, spec.max_input_bytes);
  } else {
    f.input.resize(spec.max_input_bytes);
    for (size_t i = 0; i < f.input.size() / 4; ++i) {
      const float v = static_cast<float>(i % 1000) * 0.5f;
      std::memcpy(f.input.data() + 4 * i, &v, 4);
    }
  }
  return f;
}

// Functions on the bench kernel library (bench/kernels): `stages` x bench_noop on 4 bytes,
// or one bench_copy stage over `bytes` of uint8.
FunctionFiles BenchKernelFiles(const Settings& s, const std::string& kernel, size_t bytes) {
  FunctionFiles f;
  const std::string lib =
      s.bench_kernels + "/libbench_kernels_" + (s.device == "cuda" ? "cuda" : "host") + ".so";
  f.library = ReadFile(lib);
  const size_t block = 256;
  const size_t grid =
      kernel == "bench_copy" ? std::clamp<size_t>((bytes / 16 + block - 1) / block, 1, 65535) : 1;
  json m = {{"name", kernel},
            {"chain", json::array({{{"kernel", kernel}, {"grid", grid}, {"block", block}}})},
            {"input", {{"dtype", "uint8"}, {"shape", {bytes}}}},
            {"output", {{"dtype", "uint8"}, {"shape", {bytes}}}}};
  f.manifest = m.dump();
  f.input.resize(bytes);
  for (size_t i = 0; i < bytes; ++i) f.input[i] = static_cast<char>(i * 131 + 7);
  f.out_bytes = bytes;
  f.device_bytes = 2 * bytes;
  return f;
}

// ---------------------------------------------------------------------------------------------
// A kchain-gateway child process

class Gateway {
 public:
  Gateway(const Settings& s, const std::string& label, std::vector<std::string> flags) {
    dir_ = s.scratch / label;
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    const std::string port_file = (dir_ / "port").string();
    std::vector<std::string> args = {s.gateway,
                                     "--listen",
                                     "127.0.0.1:0",
                                     "--port-file",
                                     port_file,
                                     "--data-dir",
                                     (dir_ / "data").string(),
                                     "--device",
                                     s.device,
                                     "--log-level",
                                     "warning"};
    args.insert(args.end(), flags.begin(), flags.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    const std::string log = (dir_ / "gateway.log").string();
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    const int rc = posix_spawn(&pid_, s.gateway.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot start " + s.gateway + ": " + std::strerror(rc));
    for (int i = 0; i < 600 && port_ == 0; ++i) {
      std::ifstream in(port_file);
      if (!(in >> port_)) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        throw std::runtime_error("the gateway exited at start; its log: " + ReadFile(log));
      }
    }
    if (port_ == 0) throw std::runtime_error("the gateway did not start in 30 s");
    client_ = NewClient();
  }
  ~Gateway() {
    client_.reset();
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  std::unique_ptr<httplib::Client> NewClient() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
    c->set_keep_alive(true);
    c->set_tcp_nodelay(true);
    c->set_read_timeout(std::chrono::seconds(120));
    c->set_write_timeout(std::chrono::seconds(120));
    return c;
  }
  httplib::Client& client() { return *client_; }

  void Deploy(const std::string& name, const FunctionFiles& f) {
    httplib::MultipartFormDataItems items = {
        {"manifest", f.manifest, "manifest.json", "application/json"},
        {"library", f.library, "kernel.so", "application/octet-stream"}};
    if (!f.constants.empty()) {
      items.push_back({"constants", f.constants, "constants.bin", "application/octet-stream"});
    }
    auto res = client_->Put(("/v1/functions/" + name).c_str(), items);
    if (!res || (res->status != 200 && res->status != 201)) {
      throw std::runtime_error("deploy " + name +
                               " failed: " + (res ? res->body : httplib::to_string(res.error())));
    }
  }

  void Park(const std::string& name) {
    auto res = client_->Post(("/v1/functions/" + name + "/park").c_str(), "", "text/plain");
    if (!res || res->status != 200) throw std::runtime_error("park " + name + " failed");
  }

  json Info() {
    auto res = client_->Get("/v1");
    if (!res || res->status != 200) throw std::runtime_error("GET /v1 failed");
    return json::parse(res->body);
  }

  // With process isolation: waits until a pre-initialized worker is ready, so a cold start
  // measures taking one, not waiting for one to be made.
  void WaitForIdleWorker() {
    for (int i = 0; i < 400; ++i) {
      const json info = Info();
      if (!info.contains("workers") || info["workers"].value("idle", 0) >= 1) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
  }

 private:
  fs::path dir_;
  pid_t pid_ = 0;
  int port_ = 0;
  std::unique_ptr<httplib::Client> client_;
};

// One invocation as the client saw it, with the server's Server-Timing entries (microseconds).
struct Invocation {
  double client_us = 0;
  std::string start;
  std::map<std::string, double> server_us;
  double server(const char* key) const {
    auto it = server_us.find(key);
    return it == server_us.end() ? 0.0 : it->second;
  }
};

Invocation InvokeBinary(httplib::Client& c, const std::string& name, const std::string& input,
                        std::string* output = nullptr) {
  const std::string path = "/v1/functions/" + name + "/invoke";
  const auto t0 = Clock::now();
  auto res = c.Post(path.c_str(), input, "application/octet-stream");
  Invocation inv;
  inv.client_us = MicrosSince(t0);
  if (!res || res->status != 200) {
    throw std::runtime_error(
        "invoke " + name + " failed: " +
        (res ? std::to_string(res->status) + " " + res->body : httplib::to_string(res.error())));
  }
  inv.start = res->get_header_value("X-Kchain-Start");
  std::stringstream timing(res->get_header_value("Server-Timing"));
  for (std::string entry; std::getline(timing, entry, ',');) {
    const auto semi = entry.find(";dur=");
    if (semi == std::string::npos) continue;
    std::string key = entry.substr(0, semi);
    key.erase(0, key.find_first_not_of(' '));
    inv.server_us[key] = std::stod(entry.substr(semi + 5)) * 1000.0;
  }
  if (output != nullptr) *output = std::move(res->body);
  return inv;
}

std::string JsonBody(const std::string& input) {
  std::vector<float> values(input.size() / 4);
  std::memcpy(values.data(), input.data(), values.size() * 4);
  return json{{"input", values}}.dump();
}

double InvokeJson(httplib::Client& c, const std::string& name, const std::string& body) {
  const std::string path = "/v1/functions/" + name + "/invoke";
  const auto t0 = Clock::now();
  auto res = c.Post(path.c_str(), body, "application/json");
  const double us = MicrosSince(t0);
  if (!res || res->status != 200) throw std::runtime_error("JSON invoke " + name + " failed");
  return us;
}

// ---------------------------------------------------------------------------------------------
// GPU busy fraction, read through NVML where the driver provides it (dlopen: no build-time
// dependency; absent on machines without an NVIDIA driver).

class GpuUtilization {
 public:
  GpuUtilization() {
    lib_ = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib_ == nullptr) return;
    auto init = reinterpret_cast<int (*)()>(dlsym(lib_, "nvmlInit_v2"));
    auto handle =
        reinterpret_cast<int (*)(unsigned, void**)>(dlsym(lib_, "nvmlDeviceGetHandleByIndex_v2"));
    get_ =
        reinterpret_cast<int (*)(void*, unsigned*)>(dlsym(lib_, "nvmlDeviceGetUtilizationRates"));
    memory_ = reinterpret_cast<int (*)(void*, unsigned long long*)>(
        dlsym(lib_, "nvmlDeviceGetMemoryInfo"));
    if (init == nullptr || handle == nullptr || get_ == nullptr || init() != 0 ||
        handle(0, &device_) != 0) {
      get_ = nullptr;
    }
  }
  ~GpuUtilization() {
    if (lib_ != nullptr) dlclose(lib_);
  }
  bool available() const { return get_ != nullptr; }
  // Device memory in use, every process's (0 when NVML cannot tell).
  uint64_t MemoryUsed() const {
    if (memory_ == nullptr) return 0;
    unsigned long long info[3] = {0, 0, 0};  // nvmlMemory_t {total, free, used}
    return memory_(device_, info) == 0 ? info[2] : 0;
  }
  // Percent of the last sample period in which a kernel ran (NVML's "gpu" utilization).
  double Read() const {
    unsigned rates[2] = {0, 0};  // nvmlUtilization_t {gpu, memory}
    return get_ != nullptr && get_(device_, rates) == 0 ? rates[0] : -1;
  }

 private:
  void* lib_ = nullptr;
  void* device_ = nullptr;
  int (*get_)(void*, unsigned*) = nullptr;
  int (*memory_)(void*, unsigned long long*) = nullptr;
};

// Samples utilization every 100 ms while alive; Mean() over the samples taken.
class UtilizationSampler {
 public:
  explicit UtilizationSampler(const GpuUtilization& nvml) : nvml_(nvml) {
    if (!nvml_.available()) return;
    thread_ = std::thread([this] {
      while (!stop_) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        const double v = nvml_.Read();
        if (v >= 0) samples_.push_back(v);
      }
    });
  }
  json Stop() {
    if (!thread_.joinable()) return nullptr;
    stop_ = true;
    thread_.join();
    if (samples_.empty()) return nullptr;
    return std::accumulate(samples_.begin(), samples_.end(), 0.0) / samples_.size() / 100.0;
  }
  ~UtilizationSampler() {
    if (thread_.joinable()) Stop();
  }

 private:
  const GpuUtilization& nvml_;
  std::atomic<bool> stop_{false};
  std::vector<double> samples_;
  std::thread thread_;
};

// ---------------------------------------------------------------------------------------------
// The native baseline

#ifdef KCHAIN_BENCH_CUDA
std::unique_ptr<kchain::bench::NativeChain> MakeNative(const std::string& sample,
                                                       const FunctionFiles& f, std::string* error) {
  std::vector<float> constants(f.constants.size() / 4);
  std::memcpy(constants.data(), f.constants.data(), constants.size() * 4);
  auto chain = sample == "mnist_cnn" ? kchain::bench::MakeNativeCnn(constants, error)
                                     : kchain::bench::MakeNativeVecadd(constants, error);
  if (chain != nullptr) std::memcpy(chain->input(), f.input.data(), chain->input_bytes());
  return chain;
}

// The child side of a native cold start: this process was just spawned and has no CUDA
// context. Prints one JSON line: context creation, buffers + constants, first run, then a
// warm start (buffers freed, re-allocated, constants re-uploaded, run) and hot runs.
int NativeColdChild(const Settings& s, const std::string& sample) {
  const auto t_main = Clock::now();
  json out;
  std::string error;
  auto t0 = Clock::now();
  if (cudaFree(nullptr) != cudaSuccess) return 1;  // creates the context
  out["context_us"] = MicrosSince(t0);
  const FunctionFiles f = SampleFiles(s, sample);  // file reads: kept outside the timings
  t0 = Clock::now();
  auto chain = MakeNative(sample, f, &error);
  if (chain == nullptr) return (std::fprintf(stderr, "%s\n", error.c_str()), 1);
  out["constants_us"] = MicrosSince(t0);
  t0 = Clock::now();
  if (!chain->Run(&error)) return (std::fprintf(stderr, "%s\n", error.c_str()), 1);
  out["first_run_us"] = MicrosSince(t0);
  out["cold_in_process_us"] = MicrosSince(t_main);
  chain.reset();
  t0 = Clock::now();
  chain = MakeNative(sample, f, &error);
  if (chain == nullptr) return 1;
  out["warm_constants_us"] = MicrosSince(t0);
  auto t1 = Clock::now();
  if (!chain->Run(&error)) return 1;
  out["warm_run_us"] = MicrosSince(t1);
  out["warm_us"] = MicrosSince(t0);
  std::vector<double> hot;
  for (int i = 0; i < s.hot_reps(); ++i) {
    t0 = Clock::now();
    if (!chain->RunGraph(&error)) return 1;
    hot.push_back(MicrosSince(t0));
  }
  out["hot_us"] = Quantile(hot, 0.5);
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

// Spawns `self --native-child SAMPLE` and returns its JSON with the spawn-to-exit wall time.
json RunNativeCold(const Settings& s, const std::string& self, const std::string& sample) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
  std::vector<std::string> args = {self,      "--native-child", sample, "--samples",
                                   s.samples, "--device",       "cuda"};
  if (s.quick) args.push_back("--quick");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  pid_t pid = 0;
  const auto t0 = Clock::now();
  const int rc = posix_spawn(&pid, self.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) throw std::runtime_error("cannot spawn the native child");
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) text.append(buf, n);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  const double wall = MicrosSince(t0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error("the native " + sample + " child failed");
  }
  json out = json::parse(text);
  out["process_wall_us"] = wall;
  return out;
}
#endif

// ---------------------------------------------------------------------------------------------
// Sections

// PyPlover's breakdown of one invocation, in microseconds.
json Breakdown(const Invocation& inv) {
  const double load_kernel = inv.server("acquire") + inv.server("library");
  const double load_constants = inv.server("create") + inv.server("constants");
  const double run = inv.server("run");
  return json{{"load_kernel", load_kernel},
              {"load_constants", load_constants},
              {"run_kernel", run},
              {"overhead", inv.client_us - load_kernel - load_constants - run},
              {"total", inv.client_us},
              {"server_total", inv.server("total")}};
}

json SummarizeBreakdowns(const std::vector<json>& items) {
  json out;
  for (const char* key :
       {"load_kernel", "load_constants", "run_kernel", "overhead", "total", "server_total"}) {
    std::vector<double> v;
    for (const auto& b : items) v.push_back(b[key].get<double>());
    out[key] = Spread(v);
  }
  return out;
}

json RunPyPlover(const Settings& s, const std::string& self) {
  json out;
  for (const std::string sample : {"vecadd", "mnist_cnn"}) {
    const FunctionFiles f = SampleFiles(s, sample);
    for (const std::string isolation : {"process", "none"}) {
      Progress("== pyplover: %s, --isolation=%s", sample.c_str(), isolation.c_str());
      Gateway gw(s, "pyplover-" + isolation, {"--isolation", isolation});
      std::vector<json> cold, warm, hot;
      std::string reference;
      for (int r = 0; r < s.cold_reps(); ++r) {
        gw.Deploy(sample, f);  // a new version: its first invocation is a cold start
        gw.WaitForIdleWorker();
        std::string output;
        const Invocation inv = InvokeBinary(gw.client(), sample, f.input, &output);
        if (inv.start != "cold")
          throw std::runtime_error("expected a cold start, got " + inv.start);
        if (reference.empty()) reference = output;
        if (output != reference) throw std::runtime_error(sample + ": outputs differ");
        cold.push_back(Breakdown(inv));
      }
      for (int r = 0; r < s.warm_reps(); ++r) {
        gw.Park(sample);
        const Invocation inv = InvokeBinary(gw.client(), sample, f.input);
        if (inv.start != "warm")
          throw std::runtime_error("expected a warm start, got " + inv.start);
        warm.push_back(Breakdown(inv));
      }
      for (int r = 0; r < s.hot_reps(); ++r) {
        const Invocation inv = InvokeBinary(gw.client(), sample, f.input);
        if (inv.start != "hot") throw std::runtime_error("expected a hot start, got " + inv.start);
        hot.push_back(Breakdown(inv));
      }
      out[sample][isolation] = {{"cold", SummarizeBreakdowns(cold)},
                                {"warm", SummarizeBreakdowns(warm)},
                                {"hot", SummarizeBreakdowns(hot)}};
    }
#ifdef KCHAIN_BENCH_CUDA
    if (s.device == "cuda") {
      Progress("== pyplover: %s, native CUDA (a fresh process per cold start)", sample.c_str());
      std::vector<json> runs;
      for (int r = 0; r < s.cold_reps(); ++r) runs.push_back(RunNativeCold(s, self, sample));
      json native;
      for (const char* key :
           {"context_us", "constants_us", "first_run_us", "cold_in_process_us", "process_wall_us",
            "warm_constants_us", "warm_run_us", "warm_us", "hot_us"}) {
        std::vector<double> v;
        for (const auto& run : runs) v.push_back(run[key].get<double>());
        native[key] = Spread(v);
      }
      out[sample]["native"] = native;
    }
#else
    (void)self;
#endif
  }
  return out;
}

json RunLatency(const Settings& s) {
  Progress("== latency: hot CNN over keep-alive HTTP, binary and JSON");
  const FunctionFiles f = SampleFiles(s, "mnist_cnn");
  const std::string body = JsonBody(f.input);
  json out;
  for (const std::string isolation : {"process", "none"}) {
    Gateway gw(s, "latency-" + isolation, {"--isolation", isolation});
    gw.Deploy("cnn", f);
    for (int i = 0; i < 50; ++i) InvokeBinary(gw.client(), "cnn", f.input);  // warm-up
    std::vector<std::vector<double>> binary(s.latency_rounds()), json_path(s.latency_rounds());
    std::vector<std::vector<double>> server(s.latency_rounds());
    for (int r = 0; r < s.latency_rounds(); ++r) {
      for (int i = 0; i < s.latency_calls(); ++i) {
        const Invocation inv = InvokeBinary(gw.client(), "cnn", f.input);
        binary[r].push_back(inv.client_us);
        server[r].push_back(inv.server("total"));
      }
      for (int i = 0; i < s.latency_calls(); ++i) {
        json_path[r].push_back(InvokeJson(gw.client(), "cnn", body));
      }
    }
    auto flatten = [](const std::vector<std::vector<double>>& v) {
      std::vector<double> all;
      for (const auto& r : v) all.insert(all.end(), r.begin(), r.end());
      return all;
    };
    // Quantiles of all samples for the plots (a CDF of 200 points each).
    auto cdf = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      json points = json::array();
      for (int i = 0; i <= 200; ++i) points.push_back(Quantile(v, i / 200.0));
      return points;
    };
    out[isolation] = {{"binary",
                       {{"rounds", PercentilesOverRounds(binary)},
                        {"all", Percentiles(flatten(binary))},
                        {"cdf", cdf(flatten(binary))}}},
                      {"json",
                       {{"rounds", PercentilesOverRounds(json_path)},
                        {"all", Percentiles(flatten(json_path))},
                        {"cdf", cdf(flatten(json_path))}}},
                      {"binary_server_total", {{"rounds", PercentilesOverRounds(server)}}}};
  }
#ifdef KCHAIN_BENCH_CUDA
  if (s.device == "cuda") {
    std::string error;
    auto chain = MakeNative("mnist_cnn", f, &error);
    if (chain == nullptr) throw std::runtime_error(error);
    std::vector<std::vector<double>> rounds(s.latency_rounds());
    for (int i = 0; i < 50; ++i) chain->RunGraph(&error);
    for (auto& r : rounds) {
      for (int i = 0; i < s.latency_calls(); ++i) {
        const auto t0 = Clock::now();
        if (!chain->RunGraph(&error)) throw std::runtime_error(error);
        r.push_back(MicrosSince(t0));
      }
    }
    out["native"] = {{"rounds", PercentilesOverRounds(rounds)}};
  }
#endif
  return out;
}

// `clients` threads call `call(thread_index)` for `seconds`; returns requests/s and p99.
json DriveLoad(int clients, double seconds, const GpuUtilization& nvml,
               const std::function<void(int)>& prepare, const std::function<bool(int)>& call) {
  for (int t = 0; t < clients; ++t) prepare(t);
  std::vector<std::vector<double>> latencies(clients);
  std::atomic<bool> go{false}, stop{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    latencies[t].reserve(1 << 16);
    threads.emplace_back([&, t] {
      while (!go) std::this_thread::yield();
      while (!stop) {
        const auto t0 = Clock::now();
        if (!call(t)) {
          ++failures;
          continue;
        }
        latencies[t].push_back(MicrosSince(t0));
      }
    });
  }
  UtilizationSampler util(nvml);
  const auto t0 = Clock::now();
  go = true;
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& th : threads) th.join();
  const double elapsed = MicrosSince(t0) / 1e6;
  std::vector<double> all;
  for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  return json{{"rps", all.size() / elapsed},   {"p50_us", Quantile(all, 0.5)},
              {"p99_us", Quantile(all, 0.99)}, {"requests", all.size()},
              {"failures", failures.load()},   {"gpu_busy", util.Stop()}};
}

json SummarizeLevels(const std::vector<json>& rounds) {
  json out;
  for (const char* key : {"rps", "p50_us", "p99_us"}) {
    std::vector<double> v;
    for (const auto& r : rounds) v.push_back(r[key].get<double>());
    out[key] = Spread(v);
  }
  int failures = 0;
  std::vector<double> busy;
  for (const auto& r : rounds) {
    failures += r["failures"].get<int>();
    if (!r["gpu_busy"].is_null()) busy.push_back(r["gpu_busy"].get<double>());
  }
  out["failures"] = failures;
  out["gpu_busy"] = busy.empty() ? json(nullptr) : json(Quantile(busy, 0.5));
  return out;
}

json RunThroughput(const Settings& s) {
  const GpuUtilization nvml;
  json out = {{"gpu_busy_source", nvml.available() ? "NVML utilization.gpu" : "not available"}};
  const int max_clients = s.concurrency().back();
  const std::vector<std::string> flags = {"--threads",       std::to_string(max_clients + 16),
                                          "--max-instances", "8",
                                          "--max-queue",     std::to_string(4 * max_clients)};
  out["gateway_flags"] = flags;
  struct Fn {
    std::string name;
    FunctionFiles files;
  };
  const std::vector<Fn> functions = {{"mnist_cnn", SampleFiles(s, "mnist_cnn")},
                                     {"tiny", BenchKernelFiles(s, "bench_noop", 4)}};
  std::vector<std::pair<std::string, std::vector<std::string>>> rows = {
      {"process", {"--isolation", "process"}}, {"none", {"--isolation", "none"}}};
  rows.insert(rows.end(), s.variants.begin(), s.variants.end());
  for (const auto& [isolation, row_flags] : rows) {
    std::vector<std::string> all_flags = flags;
    all_flags.insert(all_flags.end(), row_flags.begin(), row_flags.end());
    if (!s.variants.empty()) out["row_flags"][isolation] = row_flags;
    Gateway gw(s, "throughput-" + isolation, all_flags);
    for (const Fn& fn : functions) {
      gw.Deploy(fn.name, fn.files);
      std::vector<std::unique_ptr<httplib::Client>> clients(max_clients);
      for (auto& c : clients) c = gw.NewClient();
      for (int c : s.concurrency()) {
        Progress("== throughput: %s, row %s, %d clients", fn.name.c_str(), isolation.c_str(), c);
        std::vector<json> rounds;
        for (int r = 0; r < s.throughput_rounds(); ++r) {
          rounds.push_back(DriveLoad(
              c, s.throughput_seconds(), nvml,
              [&](int t) {  // instances up and connections open before the clock starts
                InvokeBinary(*clients[t], fn.name, fn.files.input);
              },
              [&](int t) {
                auto res = clients[t]->Post(("/v1/functions/" + fn.name + "/invoke").c_str(),
                                            fn.files.input, "application/octet-stream");
                return res && res->status == 200;
              }));
        }
        out[fn.name][isolation][std::to_string(c)] = SummarizeLevels(rounds);
      }
    }
  }
#ifdef KCHAIN_BENCH_CUDA
  if (s.device == "cuda") {
    // The native baseline: one chain (own buffers, own stream) per thread, graph replay.
    const FunctionFiles f = SampleFiles(s, "mnist_cnn");
    std::vector<std::unique_ptr<kchain::bench::NativeChain>> chains(max_clients);
    std::string error;
    for (auto& chain : chains) {
      chain = MakeNative("mnist_cnn", f, &error);
      if (chain == nullptr) throw std::runtime_error(error);
    }
    for (int c : s.concurrency()) {
      Progress("== throughput: mnist_cnn, native CUDA, %d threads", c);
      std::vector<json> rounds;
      for (int r = 0; r < s.throughput_rounds(); ++r) {
        rounds.push_back(DriveLoad(
            c, s.throughput_seconds(), nvml,
            [&](int t) {
              std::string e;
              chains[t]->RunGraph(&e);
            },
            [&](int t) {
              std::string e;
              return chains[t]->RunGraph(&e);
            }));
      }
      out["mnist_cnn"]["native"][std::to_string(c)] = SummarizeLevels(rounds);
    }
  }
#endif
  return out;
}

json RunPayload(const Settings& s) {
  json out;
  const size_t largest = s.payload_sizes().back();
  for (const std::string isolation : {"process", "none"}) {
    Gateway gw(s, "payload-" + isolation,
               {"--isolation", isolation, "--max-body", std::to_string(largest + (1 << 20)),
                "--max-instances", "1"});
    for (size_t bytes : s.payload_sizes()) {
      Progress("== payload: %zu MiB, --isolation=%s", bytes >> 20, isolation.c_str());
      const std::string name = "copy-" + std::to_string(bytes >> 20) + "m";
      const FunctionFiles f = BenchKernelFiles(s, "bench_copy", bytes);
      gw.Deploy(name, f);
      std::string output;
      InvokeBinary(gw.client(), name, f.input, &output);  // cold start, and a check
      if (output != f.input) throw std::runtime_error(name + ": output differs from input");
      std::vector<double> gbps, run_gbps;
      for (int r = 0; r < s.payload_reps(); ++r) {
        const Invocation inv = InvokeBinary(gw.client(), name, f.input);
        gbps.push_back(2.0 * bytes / inv.client_us / 1e3);
        run_gbps.push_back(2.0 * bytes / inv.server("run") / 1e3);
      }
      out[isolation][std::to_string(bytes)] = {{"client_gbps", Spread(gbps)},
                                               {"server_run_gbps", Spread(run_gbps)}};
    }
  }
#ifdef KCHAIN_BENCH_CUDA
  if (s.device == "cuda") {
    for (size_t bytes : s.payload_sizes()) {
      void *h_in = nullptr, *h_out = nullptr, *d = nullptr;
      cudaStream_t stream = nullptr;
      if (cudaMallocHost(&h_in, bytes) != cudaSuccess ||
          cudaMallocHost(&h_out, bytes) != cudaSuccess || cudaMalloc(&d, bytes) != cudaSuccess ||
          cudaStreamCreate(&stream) != cudaSuccess) {
        throw std::runtime_error("native payload: CUDA allocation failed");
      }
      std::vector<double> gbps;
      for (int r = 0; r <= s.payload_reps(); ++r) {
        const auto t0 = Clock::now();
        const bool ok =
            cudaMemcpyAsync(d, h_in, bytes, cudaMemcpyHostToDevice, stream) == cudaSuccess &&
            cudaMemcpyAsync(h_out, d, bytes, cudaMemcpyDeviceToHost, stream) == cudaSuccess &&
            cudaStreamSynchronize(stream) == cudaSuccess;
        if (!ok) throw std::runtime_error("native payload: cudaMemcpy failed");
        if (r > 0) gbps.push_back(2.0 * bytes / MicrosSince(t0) / 1e3);  // r == 0: warm-up
      }
      out["native_pinned_memcpy"][std::to_string(bytes)] = {{"gbps", Spread(gbps)}};
      cudaStreamDestroy(stream);
      cudaFree(d);
      cudaFreeHost(h_in);
      cudaFreeHost(h_out);
    }
  }
#endif
  return out;
}

json RunMany(const Settings& s) {
  const FunctionFiles f = SampleFiles(s, "mnist_cnn");
  const size_t budget = f.device_bytes * s.many_resident();
  Progress("== many: %d functions, a budget for %d instances, %d random invocations",
           s.many_functions(), s.many_resident(), s.many_calls());
  // In-process instances: with process isolation each function would also hold a worker
  // process and device context; see the results file's notes.
  Gateway gw(
      s, "many",
      {"--isolation", "none", "--memory-budget", std::to_string(budget), "--max-instances", "1"});
  std::vector<std::string> names;
  for (int i = 0; i < s.many_functions(); ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "f%03d", i);
    names.push_back(name);
    gw.Deploy(name, f);
  }
  std::mt19937 rng(20261122);
  std::uniform_int_distribution<int> pick(0, s.many_functions() - 1);
  std::map<std::string, std::vector<double>> by_start;
  for (int i = 0; i < s.many_calls(); ++i) {
    const Invocation inv = InvokeBinary(gw.client(), names[pick(rng)], f.input);
    by_start[inv.start].push_back(inv.client_us);
  }
  json out = {{"functions", s.many_functions()},
              {"budget_bytes", budget},
              {"instance_bytes", f.device_bytes},
              {"calls", s.many_calls()},
              {"isolation", "none"}};
  for (const char* start : {"cold", "warm", "hot"}) {
    const auto& v = by_start[start];
    out["starts"][start] = {{"share", static_cast<double>(v.size()) / s.many_calls()},
                            {"count", v.size()},
                            {"latency_us", Percentiles(v)}};
  }
  return out;
}

}  // namespace

// Tenants' API keys for a gateway: tenant t<i> with key "key-<i>-0123456789abcdef", and an
// admin. Returns the key file's path.
std::string WriteTenantKeys(const Settings& s, const std::string& label, int tenants) {
  json keys = json::array();
  for (int i = 0; i < tenants; ++i) {
    keys.push_back({{"key", "key-" + std::to_string(i) + "-0123456789abcdef"},
                    {"tenant", "t" + std::to_string(i)}});
  }
  keys.push_back({{"key", "admin-0123456789abcdef"}, {"tenant", "ops"}, {"admin", true}});
  const fs::path path = s.scratch / (label + "-keys.json");
  std::ofstream(path) << json{{"keys", keys}}.dump();
  return path.string();
}

std::unique_ptr<httplib::Client> TenantClient(const Gateway& gw, int tenant) {
  auto c = gw.NewClient();
  c->set_bearer_token_auth(tenant < 0 ? "admin-0123456789abcdef"
                                      : "key-" + std::to_string(tenant) + "-0123456789abcdef");
  return c;
}

void DeployWith(httplib::Client& c, const std::string& name, const FunctionFiles& f) {
  httplib::MultipartFormDataItems items = {
      {"manifest", f.manifest, "manifest.json", "application/json"},
      {"library", f.library, "kernel.so", "application/octet-stream"}};
  if (!f.constants.empty()) {
    items.push_back({"constants", f.constants, "constants.bin", "application/octet-stream"});
  }
  auto res = c.Put(("/v1/functions/" + name).c_str(), items);
  if (!res || (res->status != 200 && res->status != 201)) {
    throw std::runtime_error("deploy " + name +
                             " failed: " + (res ? res->body : httplib::to_string(res.error())));
  }
}

// MemAvailable from /proc/meminfo, in bytes (0 when unreadable).
uint64_t HostMemoryAvailable() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  while (meminfo >> key >> kb) {
    if (key == "MemAvailable:") return kb * 1024;
    meminfo.ignore(256, '\n');
  }
  return 0;
}

// One progress line on the workers (GET /v1/workers): how many, their starts and ends, and
// the device memory NVML counts.
std::string WorkersLine(const Gateway& gw, const GpuUtilization& nvml) {
  auto admin = TenantClient(gw, -1);
  auto res = admin->Get("/v1/workers");
  if (!res || res->status != 200) return "workers: GET /v1/workers failed";
  const json w = json::parse(res->body, nullptr, false);
  if (w.is_discarded()) return "workers: GET /v1/workers sent no JSON";
  auto mean_ms = [&](const char* key) {
    const json& part = w.value(key, json::object());
    const double n = part.value("count", 0.0);
    return n > 0 ? 1e3 * part.value("seconds", 0.0) / n : 0.0;
  };
  char line[512];
  std::snprintf(line, sizeof line,
                "workers live %d (idle %d, spawning %d, ending %d, limit %d), spawn failures "
                "%d, mean start %.0f ms, mean end %.0f ms, evictions %s, device memory used "
                "%.1f GiB",
                w.value("live", 0), w.value("idle", 0), w.value("spawning", 0),
                w.value("ending", 0), w.value("limit", 0), w.value("spawn_failures", 0),
                mean_ms("starts"), mean_ms("ends"),
                w.value("evictions", json::object()).dump().c_str(),
                static_cast<double>(nvml.MemoryUsed()) / (1 << 30));
  std::string out = line;
  if (const std::string e = w.value("last_spawn_error", ""); !e.empty()) {
    out += "; last spawn error: " + e.substr(0, 200);
  }
  return out;
}

// A tenants part's gateway flags, then --tenant-flags (a later flag wins).
std::vector<std::string> TenantGatewayFlags(const Settings& s, std::vector<std::string> flags) {
  flags.insert(flags.end(), s.tenant_flags.begin(), s.tenant_flags.end());
  return flags;
}

// Each part is also written into (*partial)["tenants"] and saved as it is done.
json RunTenants(const Settings& s, json* partial, const std::function<void()>& save) {
  const GpuUtilization nvml;
  const FunctionFiles cnn = SampleFiles(s, "mnist_cnn");
  json out;
  auto keep = [&](const char* part, json value) {
    out[part] = value;
    (*partial)["tenants"][part] = std::move(value);
    save();
  };
  if (s.tenant_parts.contains("density")) {
    // Density: many functions of one tenant, on one worker's context.
    const int n = s.density_functions();
    Progress("== tenants: density, %d functions of one tenant", n);
    const uint64_t used_before = nvml.MemoryUsed();
    Gateway gw(s, "density",
               TenantGatewayFlags(s, {"--isolation", "process", "--max-instances", "1"}));
    for (int i = 0; i < n; ++i) {
      gw.Deploy("f" + std::to_string(i), cnn);
      if ((i + 1) % 250 == 0) Progress("   deployed %d", i + 1);
    }
    std::vector<double> cold, hot;
    int cold_ok = 0, hot_ok = 0;
    for (auto* pass : {&cold, &hot}) {
      for (int i = 0; i < n; ++i) {
        try {
          const Invocation inv = InvokeBinary(gw.client(), "f" + std::to_string(i), cnn.input);
          pass->push_back(inv.client_us);
          (pass == &cold ? cold_ok : hot_ok) += inv.start == (pass == &cold ? "cold" : "hot");
        } catch (const std::exception&) {
        }
      }
    }
    const uint64_t used_after = nvml.MemoryUsed();
    const json workers = gw.Info()["workers"];
    const double context = workers.value("context_bytes", 0.0);
    const double live = workers.value("live", 0.0);
    json d = {{"functions", n},
              {"cold_ok", cold_ok},
              {"hot_ok", hot_ok},
              {"cold_latency_us", Percentiles(cold)},
              {"hot_latency_us", Percentiles(hot)},
              {"workers_live", live},
              {"workers_bound", workers.value("bound", 0)},
              {"context_bytes", context}};
    if (used_before != 0 && used_after != 0) {
      const double held = static_cast<double>(used_after) - static_cast<double>(used_before);
      d["device_memory_held_bytes"] = held;
      // All of it but the contexts: what the functions' instances and modules take.
      d["beyond_contexts_bytes"] = held - live * context;
    }
    keep("density", d);
  }
  if (s.tenant_parts.contains("many_tenants")) {
    // Many tenants, two functions each, in a random order.
    const int tenants = s.tenants();
    Progress("== tenants: %d tenants x 2 functions, random order", tenants);
    Gateway gw(s, "many-tenants",
               TenantGatewayFlags(
                   s, {"--isolation", "process", "--api-keys", WriteTenantKeys(s, "many", tenants),
                       "--threads", "64", "--prestarted-workers", "8"}));
    // Deploys from 8 clients: each tenant's first one binds (and may have to start) a worker.
    auto phase_start = Clock::now();
    std::atomic<int> deploy_failures{0};
    {
      std::atomic<int> next_tenant{0}, deployed{0};
      std::vector<std::thread> deployers;
      for (int w = 0; w < 8; ++w) {
        deployers.emplace_back([&] {
          for (int t = next_tenant++; t < tenants; t = next_tenant++) {
            auto c = TenantClient(gw, t);
            try {
              DeployWith(*c, "a", cnn);
              DeployWith(*c, "b", cnn);
            } catch (const std::exception& e) {
              ++deploy_failures;
              Progress("   %s", e.what());
            }
            if (const int done = ++deployed; done % 25 == 0) {
              // What the machine has left: host memory, workers, device memory (NVML).
              Progress("   deployed for %d tenants at %.0f s: host memory available %.1f GiB, %s",
                       done, MicrosSince(phase_start) / 1e6,
                       static_cast<double>(HostMemoryAvailable()) / (1 << 30),
                       WorkersLine(gw, nvml).c_str());
            }
          }
        });
      }
      for (auto& d : deployers) d.join();
    }
    // Each function --tenant-calls times, all in one random order.
    std::vector<std::pair<int, std::string>> calls;
    for (int round = 0; round < s.tenant_calls; ++round) {
      for (int t = 0; t < tenants; ++t) {
        calls.push_back({t, "a"});
        calls.push_back({t, "b"});
      }
    }
    std::mt19937 rng(20261202);
    std::shuffle(calls.begin(), calls.end(), rng);
    std::mutex mu;
    std::map<std::string, std::vector<double>> by_start;
    std::atomic<size_t> next{0};
    std::atomic<int> failures{0};
    std::vector<std::string> errors;
    std::vector<std::thread> threads;
    const double deploy_seconds = MicrosSince(phase_start) / 1e6;
    phase_start = Clock::now();
    for (int w = 0; w < 8; ++w) {
      threads.emplace_back([&] {
        for (size_t i = next++; i < calls.size(); i = next++) {
          auto c = TenantClient(gw, calls[i].first);
          if ((i + 1) % 100 == 0) {
            Progress("   invoking %zu of %zu at %.0f s: %s", i + 1, calls.size(),
                     MicrosSince(phase_start) / 1e6, WorkersLine(gw, nvml).c_str());
          }
          try {
            const Invocation inv = InvokeBinary(*c, calls[i].second, cnn.input);
            std::lock_guard<std::mutex> lock(mu);
            by_start[inv.start].push_back(inv.client_us);
          } catch (const std::exception& e) {
            ++failures;
            std::lock_guard<std::mutex> lock(mu);
            if (errors.size() < 5) errors.push_back(e.what());
          }
        }
      });
    }
    for (auto& t : threads) t.join();
    const double invoke_seconds = MicrosSince(phase_start) / 1e6;
    auto admin = TenantClient(gw, -1);
    auto res = admin->Get("/v1/workers");
    const json workers = res && res->status == 200 ? json::parse(res->body) : json::object();
    json m = {{"tenants", tenants},
              {"gateway_flags", s.tenant_flags},
              {"functions", 2 * tenants},
              {"calls_per_function", s.tenant_calls},
              {"calls", calls.size()},
              {"failures", failures.load()},
              {"deploy_failures", deploy_failures.load()},
              {"errors", errors},
              {"workers_live", workers.value("live", 0)},
              {"workers_bound", workers.value("bound", 0)},
              {"evictions", workers.value("evictions", json::object())},
              {"spawn_failures", workers.value("spawn_failures", 0)},
              {"worker_starts", workers.value("starts", json::object())},
              {"worker_ends", workers.value("ends", json::object())},
              {"deploy_seconds", deploy_seconds},
              {"invoke_seconds", invoke_seconds}};
    for (const char* start : {"cold", "warm", "hot"}) {
      const auto& v = by_start[start];
      m["starts"][start] = {{"share", static_cast<double>(v.size()) / calls.size()},
                            {"count", v.size()},
                            {"latency_us", Percentiles(v)}};
    }
    keep("many_tenants", m);
  }
  if (s.tenant_parts.contains("containment")) {
    // Containment: tenant 0's CNN at 8 clients while tenant 1's kernels fault.
    Progress("== tenants: containment, a CNN at 8 clients while another tenant faults");
    Gateway gw(s, "containment",
               TenantGatewayFlags(
                   s, {"--isolation", "process", "--api-keys", WriteTenantKeys(s, "containment", 2),
                       "--max-instances", "8", "--invoke-timeout-ms", "1500", "--threads", "64"}));
    FunctionFiles fault = BenchKernelFiles(s, "bench_copy", 16);
    json m = json::parse(fault.manifest);
    m["chain"][0]["kernel"] = "bench_fault";
    m["input"] = {{"dtype", "uint8"}};
    m["max_input_bytes"] = 16;
    m["tmp_bytes"] = 64;
    fault.manifest = m.dump();
    DeployWith(*TenantClient(gw, 0), "cnn", cnn);
    DeployWith(*TenantClient(gw, 1), "faulty", fault);
    const int clients = 8;
    std::vector<std::unique_ptr<httplib::Client>> a(clients);
    for (auto& c : a) c = TenantClient(gw, 0);
    auto drive = [&] {
      return DriveLoad(
          clients, s.containment_seconds(), nvml,
          [&](int t) { InvokeBinary(*a[t], "cnn", cnn.input); },
          [&](int t) {
            auto res =
                a[t]->Post("/v1/functions/cnn/invoke", cnn.input, "application/octet-stream");
            return res && res->status == 200;
          });
    };
    const json quiet = drive();
    std::atomic<bool> stop{false};
    std::map<int, int> fault_statuses;
    std::thread faults([&] {
      auto b = TenantClient(gw, 1);
      for (int i = 0; !stop; ++i) {
        const std::string input(static_cast<size_t>(1 + i % 3), 'x');  // address, trap, endless
        auto res = b->Post("/v1/functions/faulty/invoke", input, "application/octet-stream");
        ++fault_statuses[res ? res->status : -1];
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const json noisy = drive();
    stop = true;
    faults.join();
    json statuses = json::object();
    for (const auto& [status, count] : fault_statuses) statuses[std::to_string(status)] = count;
    keep("containment",
         {{"clients", clients},
          {"without_faults", quiet},
          {"with_faults", noisy},
          {"fault_statuses", statuses},
          {"ratio", noisy["rps"].get<double>() / std::max(1.0, quiet["rps"].get<double>())}});
  }
  return out;
}

int main(int argc, char** argv) {
  Settings s;
  std::string native_child;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
      return argv[++i];
    };
    try {
      if (arg == "--out") {
        s.out = value();
      } else if (arg == "--device") {
        s.device = value();
      } else if (arg == "--quick") {
        s.quick = true;
      } else if (arg == "--gateway") {
        s.gateway = value();
      } else if (arg == "--samples") {
        s.samples = value();
      } else if (arg == "--bench-kernels") {
        s.bench_kernels = value();
      } else if (arg == "--native-child") {
        native_child = value();
      } else if (arg == "--tenant-parts") {
        s.tenant_parts.clear();
        std::stringstream list(value());
        for (std::string item; std::getline(list, item, ',');) {
          if (item != "density" && item != "many_tenants" && item != "containment") {
            throw std::invalid_argument("--tenant-parts: density, many_tenants, containment");
          }
          s.tenant_parts.insert(item);
        }
      } else if (arg == "--tenant-calls") {
        s.tenant_calls = std::stoi(value());
        if (s.tenant_calls < 1 || s.tenant_calls > 100) {
          throw std::invalid_argument("--tenant-calls: 1..100");
        }
      } else if (arg == "--tenant-flags") {
        std::stringstream words(value());
        for (std::string word; words >> word;) s.tenant_flags.push_back(word);
      } else if (arg == "--clients") {
        std::stringstream list(value());
        for (std::string item; std::getline(list, item, ',');) {
          const int n = std::stoi(item);
          if (n < 1 || n > 4096) throw std::invalid_argument("--clients: 1..4096 each");
          s.clients.push_back(n);
        }
      } else if (arg == "--variant") {
        const std::string spec = value();
        const size_t eq = spec.find('=');
        const std::string label = spec.substr(0, eq == std::string::npos ? 0 : eq);
        if (label.empty() || label.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_-") !=
                                 std::string::npos) {
          throw std::invalid_argument(
              "--variant: LABEL=FLAGS, e.g. spin50=--worker-request-spin-us 50");
        }
        const bool taken =
            label == "process" || label == "none" || label == "native" ||
            std::ranges::any_of(s.variants, [&](const auto& v) { return v.first == label; });
        if (taken) throw std::invalid_argument("--variant: the row '" + label + "' exists already");
        std::vector<std::string> flags;
        std::stringstream words(spec.substr(eq + 1));
        for (std::string word; words >> word;) flags.push_back(word);
        s.variants.emplace_back(spec.substr(0, eq), std::move(flags));
      } else if (arg == "--sections") {
        s.sections.clear();
        std::stringstream list(value());
        for (std::string item; std::getline(list, item, ',');) s.sections.insert(item);
      } else {
        std::fprintf(stderr, "unknown argument %s (see the top of bench/load/load_bench.cc)\n",
                     arg.c_str());
        return 2;
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s\n", e.what());
      return 2;
    }
  }
  for (const auto& section : s.sections) {
    if (!std::set<std::string>{"pyplover", "latency", "throughput", "payload", "many", "tenants"}
             .contains(section)) {
      std::fprintf(stderr, "unknown section '%s'\n", section.c_str());
      return 2;
    }
  }
  if (s.device == "auto") s.device = kchain::Device::CudaDeviceCount() > 0 ? "cuda" : "host";
  try {
#ifdef KCHAIN_BENCH_CUDA
    if (!native_child.empty()) return NativeColdChild(s, native_child);
#endif
    if (s.out.empty()) {
      std::fprintf(stderr, "give --out FILE.json\n");
      return 2;
    }
    if (s.device == "cuda") {
#ifndef KCHAIN_BENCH_CUDA
      std::fprintf(stderr, "this build has no CUDA; use --device host\n");
      return 2;
#endif
    }
    s.scratch = fs::temp_directory_path() / ("kchain_load_bench." + std::to_string(getpid()));
    fs::create_directories(s.scratch);
    const std::string self = fs::read_symlink("/proc/self/exe").string();
    json out = {{"quick", s.quick}, {"device_kind", s.device}};
    {
      Gateway probe(s, "probe", {"--isolation", "none"});
      out["device"] = probe.Info()["device"];
      out["gateway_version"] = probe.Info()["version"];
    }
    const auto t0 = Clock::now();
    // Written after every section, so that a run cut short (a time limit) keeps what it had.
    auto save = [&] {
      out["seconds"] = MicrosSince(t0) / 1e6;
      std::ofstream(s.out) << out.dump(1) << "\n";
    };
    const std::pair<const char*, std::function<json()>> sections[] = {
        {"pyplover", [&] { return RunPyPlover(s, self); }},
        {"latency", [&] { return RunLatency(s); }},
        {"throughput", [&] { return RunThroughput(s); }},
        {"payload", [&] { return RunPayload(s); }},
        {"many", [&] { return RunMany(s); }},
        {"tenants", [&] { return RunTenants(s, &out, save); }},
    };
    for (const auto& [name, run] : sections) {
      if (!s.sections.contains(name)) continue;
      json result = run();
      out[name] = std::move(result);
      save();
    }
    fs::remove_all(s.scratch);
    Progress("== wrote %s (%.0f s)", s.out.c_str(), out["seconds"].get<double>());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kchain_load_bench: %s\n", e.what());
    if (!s.scratch.empty()) {
      std::error_code ec;
      fs::remove_all(s.scratch, ec);
    }
    return 1;
  }
}
