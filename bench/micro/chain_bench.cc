// Micro-benchmarks of the hot path, in one process and one run: chains launched by a plain
// CUDA program (the native baseline), by the kchain runtime directly, and by the kchain
// runtime with graph replay. On machines without a GPU only the host backend is timed.
//
// Every variant is first checked to compute the right output; a variant that does not is not
// timed (it shows as FAILED in the tables and the exit status is 1). Tables of medians and
// ratios, computed from the numbers of this run, close the output.
//
//   kchain_micro_bench                      the full run: 13 benchmarks on a host without a
//                                           GPU (about 15 s on 2 cores), 79 with one
//   kchain_micro_bench --kchain_quick       smoke run (or KCHAIN_BENCH_QUICK=1): every benchmark
//                                           for 0.01 s, host copies up to 1 MiB; under 1 s
//   kchain_micro_bench --benchmark_filter='^chain_len/'   one family (a regex on the names)
//   kchain_micro_bench --benchmark_repetitions=10 --benchmark_report_aggregates_only=true
//       --benchmark_min_time=0.2s --benchmark_out=micro.json --benchmark_out_format=json
//       (one line) a GPU run with medians; 10 repetitions at the default 0.5 s would take
//       about 9 minutes on a GPU, 0.2 s about 4.
// --benchmark_min_time takes seconds with or without an "s" suffix: the suffix is dropped
// before Google Benchmark sees it, since Debian 12's 1.7 wants a bare number (1.8 and later
// take both; they print a one-line notice for a bare one). An explicit --benchmark_min_time
// wins over --kchain_quick's. Both go through the flag, never MinTime(), so that the names in
// the JSON do not change.
//
// Benchmarks (names are stable: bench/report.py reads them from the JSON, where Google
// Benchmark appends "/real_time" to each):
//   <sample>/native_direct, <sample>/native_graph             sample = mnist_cnn, vecadd
//   <sample>/kchain_cuda_{direct,direct_every_run_timed,graph,graph_every_run_timed,
//                         graph_with_copies}, <sample>/kchain_host_direct
//   chain_len/<N>/{native_direct,native_graph,kchain_cuda_direct,kchain_cuda_graph,
//                  kchain_host_direct}                        N = 1, 4, 16, 64 bench_noop stages
//       4-byte input and output copies included. Counters: stages, stages_per_s; kchain also
//       chain_us, input_copy_us, output_copy_us (means of the sampled stage timings).
//   copy_size/<S>/{native_memcpy,native_copy_kernel,native_copy_kernel_graph,
//                  kchain_cuda_graph,kchain_host_direct}      S = 4KiB ... 256MiB (host: <= 16MiB)
//       S bytes H2D, one bench_copy stage (native_memcpy: none), S bytes D2H. Counters: bytes
//       (S), bytes_per_second (input + output bytes, 2 S per run); kchain also chain_us,
//       input_copy_us, output_copy_us.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kchain/function.h"
#include "kchain/manifest.h"
#ifdef KCHAIN_BENCH_CUDA
#include "native_cuda.h"
#endif

namespace {

using kchain::Status;

std::string SamplePath(const std::string& sample, const std::string& file) {
  return std::string(KCHAIN_SAMPLES_BUILD_DIR) + "/" + sample + "/" + file;
}

std::vector<float> ReadFloats(const std::string& path) {
  auto bytes = kchain::ReadFileToString(path);
  if (!bytes.ok()) return {};
  std::vector<float> out(bytes->size() / 4);
  std::memcpy(out.data(), bytes->data(), out.size() * 4);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Run settings, failures and common configuration.

bool g_quick = false;  // --kchain_quick or KCHAIN_BENCH_QUICK

// Variants that failed their correctness check or a run, with why. They print as FAILED in
// the tables and make the exit status 1.
std::map<std::string, std::string>& Failures() {
  static std::map<std::string, std::string> failures;
  return failures;
}

void RecordFailure(const std::string& name, const std::string& why) {
  std::fprintf(stderr, "FAILED %s: %s\n", name.c_str(), why.c_str());
  Failures().emplace(name, why);
}

// Fails the benchmark now running; the caller leaves its loop.
void FailRun(benchmark::State& state, const std::string& name, const std::string& why) {
  Failures().emplace(name, why);
  state.SkipWithError(why.c_str());
}

template <typename B>
B* Configure(B* b) {
  return b->UseRealTime()->Unit(benchmark::kMicrosecond);
}

// Sums of the sampled stage timings of kchain runs, reported as mean counters.
struct StageTimes {
  double input_copy_us = 0, chain_us = 0, output_copy_us = 0;
  int64_t timed = 0;

  void Add(const kchain::RunTimings& t) {
    if (!t.stages_timed) return;
    input_copy_us += t.input_copy_us;
    chain_us += t.chain_us;
    output_copy_us += t.output_copy_us;
    ++timed;
  }
  void Report(benchmark::State& state) const {
    if (timed == 0) return;
    const double n = static_cast<double>(timed);
    state.counters["chain_us"] = chain_us / n;
    state.counters["input_copy_us"] = input_copy_us / n;
    state.counters["output_copy_us"] = output_copy_us / n;
  }
};

// ---------------------------------------------------------------------------------------------
// The samples: mnist_cnn and vecadd.

// One sample loaded on one device: its constants, a representative input, and instances.
struct Loaded {
  kchain::Manifest manifest;
  std::vector<float> constants;
  std::vector<std::byte> input;
  std::shared_ptr<const kchain::Function> function;
};

kchain::StatusOr<Loaded> LoadSample(const std::string& sample,
                                    const std::shared_ptr<kchain::Device>& device) {
  Loaded out;
  KCHAIN_ASSIGN_OR_RETURN(out.manifest,
                          kchain::LoadManifestFile(SamplePath(sample, "manifest.json")));
  out.constants = ReadFloats(out.manifest.constants);
  KCHAIN_ASSIGN_OR_RETURN(std::string lib_path,
                          kchain::ManifestLibraryFor(out.manifest, device->kind()));
  KCHAIN_ASSIGN_OR_RETURN(auto lib, kchain::Library::Open(lib_path, device->kind()));
  KCHAIN_ASSIGN_OR_RETURN(out.function,
                          kchain::Function::Create(device, lib, out.manifest.spec,
                                                   std::as_bytes(std::span(out.constants))));
  out.input.resize(out.manifest.spec.max_input_bytes);
  if (sample == "mnist_cnn") {
    const auto images = ReadFloats(SamplePath(sample, "heldout_images.bin"));
    std::memcpy(out.input.data(), images.data(), out.input.size());
  } else {
    for (size_t i = 0; i < out.input.size() / 4; ++i) {
      const float v = static_cast<float>(i % 1000) * 0.5f;
      std::memcpy(out.input.data() + 4 * i, &v, 4);
    }
  }
  return out;
}

// Registers the kchain variants of one sample on one device.
Status RegisterKchain(const std::string& sample, const std::shared_ptr<kchain::Device>& device,
                      std::vector<std::byte>* reference) {
  KCHAIN_ASSIGN_OR_RETURN(Loaded loaded, LoadSample(sample, device));
  auto shared = std::make_shared<Loaded>(std::move(loaded));
  const std::string prefix =
      sample + "/kchain_" + std::string(kchain::DeviceKindName(device->kind()));

  struct Variant {
    const char* name;
    kchain::GraphPolicy graph;
    bool staged;                   // RunStaged (zero copy) or Run (copies the caller's buffers)
    uint32_t stage_timing_period;  // 64: the default sampling; 1: every run timed
  };
  const bool cuda = device->kind() == kchain::DeviceKind::kCuda;
  std::vector<Variant> variants = {{"_direct", kchain::GraphPolicy::kDisabled, true, 64}};
  if (cuda) {
    variants.push_back({"_direct_every_run_timed", kchain::GraphPolicy::kDisabled, true, 1});
    variants.push_back({"_graph", kchain::GraphPolicy::kAuto, true, 64});
    variants.push_back({"_graph_every_run_timed", kchain::GraphPolicy::kAuto, true, 1});
    variants.push_back({"_graph_with_copies", kchain::GraphPolicy::kAuto, false, 64});
  }
  for (const Variant& v : variants) {
    kchain::InstanceOptions options;
    options.graph = v.graph;
    options.stage_timing_period = v.stage_timing_period;
    KCHAIN_ASSIGN_OR_RETURN(std::shared_ptr<kchain::Instance> instance,
                            kchain::Instance::Create(shared->function, options));
    // Correctness first: the same output as the reference, after warm-up runs.
    const size_t in_bytes = shared->input.size();
    std::memcpy(instance->input_staging().data(), shared->input.data(), in_bytes);
    for (int i = 0; i < 3; ++i) KCHAIN_RETURN_IF_ERROR(instance->RunStaged(in_bytes));
    const auto out = instance->output_staging();
    if (reference->empty()) reference->assign(out.begin(), out.end());
    if (reference->size() != out.size() ||
        std::memcmp(reference->data(), out.data(), out.size()) != 0) {
      return kchain::InternalError(prefix + v.name + " computes a different output");
    }
    auto output = std::make_shared<std::vector<std::byte>>(out.size());
    Configure(benchmark::RegisterBenchmark(
        (prefix + v.name).c_str(), [instance, shared, output, staged = v.staged,
                                    name = prefix + v.name](benchmark::State& state) {
          kchain::RunTimings timings;
          double chain_us = 0;
          int64_t timed = 0;
          for (auto _ : state) {
            Status s = staged ? instance->RunStaged(shared->input.size(), &timings)
                              : instance->Run(shared->input, *output, &timings);
            if (!s.ok()) {
              FailRun(state, name, s.ToString());
              break;
            }
            if (timings.stages_timed) {
              chain_us += timings.chain_us;
              ++timed;
            }
          }
          if (timed > 0) state.counters["chain_us"] = chain_us / static_cast<double>(timed);
          state.SetLabel(std::string(kchain::ExecModeName(timings.mode)));
        }));
  }
  return Status();
}

#ifdef KCHAIN_BENCH_CUDA
Status RegisterNative(const std::string& sample, std::vector<std::byte>* reference) {
  KCHAIN_ASSIGN_OR_RETURN(auto manifest,
                          kchain::LoadManifestFile(SamplePath(sample, "manifest.json")));
  const auto constants = ReadFloats(manifest.constants);
  std::string error;
  std::shared_ptr<kchain::bench::NativeChain> chain =
      sample == "mnist_cnn" ? kchain::bench::MakeNativeCnn(constants, &error)
                            : kchain::bench::MakeNativeVecadd(constants, &error);
  if (chain == nullptr) return kchain::InternalError("native " + sample + ": " + error);
  // The same input as the kchain variants.
  auto host = kchain::Device::Open(kchain::DeviceKind::kHost);
  KCHAIN_ASSIGN_OR_RETURN(Loaded loaded, LoadSample(sample, *host));
  std::memcpy(chain->input(), loaded.input.data(), chain->input_bytes());
  for (bool graph : {false, true}) {
    for (int i = 0; i < 3; ++i) {
      if (!(graph ? chain->RunGraph(&error) : chain->Run(&error))) {
        return kchain::InternalError("native " + sample + ": " + error);
      }
    }
    const auto* out = static_cast<const std::byte*>(chain->output());
    if (reference->empty()) reference->assign(out, out + chain->output_bytes());
    if (std::memcmp(reference->data(), out, chain->output_bytes()) != 0) {
      return kchain::InternalError("native " + sample + " outputs differ between direct and graph");
    }
    const std::string name = sample + (graph ? "/native_graph" : "/native_direct");
    Configure(
        benchmark::RegisterBenchmark(name.c_str(), [chain, graph, name](benchmark::State& state) {
          std::string err;
          for (auto _ : state) {
            if (!(graph ? chain->RunGraph(&err) : chain->Run(&err))) {
              FailRun(state, name, err);
              break;
            }
          }
        }));
  }
  return Status();
}
#endif

// ---------------------------------------------------------------------------------------------
// The bench kernels (bench/kernels): chain length and input size scaling.

constexpr int kChainLengths[] = {1, 4, 16, 64};

struct CopySize {
  size_t bytes;
  const char* label;
};
constexpr CopySize kCopySizes[] = {
    {size_t{4} << 10, "4KiB"},     {size_t{16} << 10, "16KiB"}, {size_t{64} << 10, "64KiB"},
    {size_t{256} << 10, "256KiB"}, {size_t{1} << 20, "1MiB"},   {size_t{4} << 20, "4MiB"},
    {size_t{16} << 20, "16MiB"},   {size_t{64} << 20, "64MiB"}, {size_t{256} << 20, "256MiB"},
};
// The host backend copies with memcpy, three times a run: the largest sizes would only make
// the host run long.
constexpr size_t kHostMaxCopyBytes = size_t{16} << 20;
constexpr size_t kHostQuickMaxCopyBytes = size_t{1} << 20;

// Launch dimensions of the bench_copy stage: one 16-byte vector per thread up to 1024 blocks
// of 256 threads (about one full wave on an H100), grid-stride beyond. The native copy
// kernel uses the same.
constexpr int kCopyBlock = 256;
int CopyGrid(size_t bytes) {
  const size_t per_block = 16 * static_cast<size_t>(kCopyBlock);
  return static_cast<int>(std::clamp<size_t>((bytes + per_block - 1) / per_block, 1, 1024));
}

std::string ChainLengthName(int stages, const std::string& variant) {
  return "chain_len/" + std::to_string(stages) + "/" + variant;
}
std::string CopySizeName(const CopySize& size, const std::string& variant) {
  return std::string("copy_size/") + size.label + "/" + variant;
}
std::string KchainVariant(const kchain::Device& device, kchain::GraphPolicy graph) {
  return "kchain_" + std::string(kchain::DeviceKindName(device.kind())) +
         (graph == kchain::GraphPolicy::kAuto ? "_graph" : "_direct");
}

kchain::FunctionSpec NoopChainSpec(int stages) {
  kchain::FunctionSpec spec;
  spec.chain.assign(static_cast<size_t>(stages), kchain::Stage{"bench_noop", 1, 1});
  spec.max_input_bytes = sizeof(float);
  spec.out_bytes = sizeof(float);
  spec.input = {kchain::ElementType::kFloat32, {1}};
  spec.output = {kchain::ElementType::kFloat32, {1}};
  return spec;
}

kchain::FunctionSpec CopySpec(size_t bytes) {
  kchain::FunctionSpec spec;
  spec.chain = {kchain::Stage{"bench_copy", CopyGrid(bytes), kCopyBlock}};
  spec.max_input_bytes = bytes;
  spec.out_bytes = bytes;
  spec.input = {kchain::ElementType::kUint8, {}};
  spec.output = {kchain::ElementType::kUint8, {}};
  return spec;
}

kchain::StatusOr<std::shared_ptr<const kchain::Library>> OpenBenchKernels(
    const kchain::Device& device) {
  const std::string path = std::string(KCHAIN_BENCH_KERNELS_DIR) + "/libbench_kernels_" +
                           std::string(kchain::DeviceKindName(device.kind())) + ".so";
  return kchain::Library::Open(path, device.kind());
}

// --- Correctness of a noop chain: out[0] counts the stages that ran.

float ReadFloat(const void* p) {
  float v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// What a float32 holds after `count` times `+= 1.0f` from `start`, in IEEE round-to-nearest
// as on the GPU and the host: integers count exactly up to 2^24, where x + 1 rounds back to x.
float AfterIncrements(float start, uint64_t count) {
  constexpr double kExact = 16777216.0;  // 2^24
  float f = start;
  for (; count > 0; --count) {
    if (!std::isfinite(f)) return f;
    if (f == std::trunc(f) && std::fabs(f) <= kExact) {
      return static_cast<float>(
          std::min(static_cast<double>(f) + static_cast<double>(count), kExact));
    }
    const float next = f + 1.0f;  // not an integer yet (or above 2^24): step until it is
    if (next == f) return f;
    f = next;
  }
  return f;
}

// Runs `run` a few times, checking that each run adds `stages` to out[0] (read at `out` after
// the run). Catches stages skipped, a graph replaying nothing, output copies missing.
Status CheckNoopRuns(int stages, const std::function<Status()>& run, const void* out) {
  KCHAIN_RETURN_IF_ERROR(run());  // out's first contents are undefined: this run sets a base
  float before = ReadFloat(out);
  if (!std::isfinite(before)) {
    return kchain::InternalError("out[0] is " + std::to_string(before) +
                                 " after a run; a noop chain cannot be checked from there");
  }
  for (int i = 0; i < 4; ++i) {
    const float want = AfterIncrements(before, static_cast<uint64_t>(stages));
    if (want == before) {
      return kchain::InternalError("out[0] is " + std::to_string(before) +
                                   ", too large to count stages with");
    }
    KCHAIN_RETURN_IF_ERROR(run());
    const float after = ReadFloat(out);
    if (after != want) {
      return kchain::InternalError(
          "out[0] went from " + std::to_string(before) + " to " + std::to_string(after) +
          " in a run of " + std::to_string(stages) + " noop stages; want " + std::to_string(want));
    }
    before = after;
  }
  return Status();
}

// The same check over a whole benchmark loop, outside the timed region.
bool NoopLoopCorrect(benchmark::State& state, const std::string& name, int stages, float before,
                     float after) {
  const uint64_t count = static_cast<uint64_t>(stages) * static_cast<uint64_t>(state.iterations());
  const float want = AfterIncrements(before, count);
  if (after == want) return true;
  FailRun(state, name,
          "out[0] went from " + std::to_string(before) + " to " + std::to_string(after) + " over " +
              std::to_string(state.iterations()) + " runs; want " + std::to_string(want));
  return false;
}

void ReportChainCounters(benchmark::State& state, int stages) {
  state.counters["stages"] = stages;
  state.counters["stages_per_s"] =
      benchmark::Counter(stages, benchmark::Counter::kIsIterationInvariantRate);
}

// An instance of a noop chain whose out[0] can count stages. out's first contents are
// undefined (on the host backend, whatever the allocator left there), and a float that is not
// finite or is at 2^24 or beyond no longer counts increments. An instance that cannot count is
// kept until the search ends, so that the next one gets other memory.
kchain::StatusOr<std::shared_ptr<kchain::Instance>> CreateCountingInstance(
    const std::shared_ptr<const kchain::Function>& function,
    const kchain::InstanceOptions& options) {
  constexpr int kTries = 8;
  std::vector<std::shared_ptr<kchain::Instance>> rejected;
  float value = 0;
  for (int i = 0; i < kTries; ++i) {
    KCHAIN_ASSIGN_OR_RETURN(std::shared_ptr<kchain::Instance> instance,
                            kchain::Instance::Create(function, options));
    std::memset(instance->input_staging().data(), 0, instance->input_staging().size());
    KCHAIN_RETURN_IF_ERROR(instance->RunStaged(instance->input_staging().size()));
    value = ReadFloat(instance->output_staging().data());
    if (std::isfinite(value) && std::fabs(value) < 8388608.0f) return instance;  // 2^23
    rejected.push_back(std::move(instance));
  }
  return kchain::InternalError(
      "out[0] of " + std::to_string(kTries) +
      " new instances held values a float cannot count from (last: " + std::to_string(value) + ")");
}

// Creates and checks the kchain variants of a chain of `stages` bench_noop stages on one
// device. A variant that cannot be created or checked is recorded as failed, not timed.
void RegisterChainLengthKchain(int stages, const std::shared_ptr<kchain::Device>& device,
                               const std::shared_ptr<const kchain::Library>& library) {
  std::vector<kchain::GraphPolicy> policies = {kchain::GraphPolicy::kDisabled};
  if (device->kind() == kchain::DeviceKind::kCuda) policies.push_back(kchain::GraphPolicy::kAuto);
  auto function = kchain::Function::Create(device, library, NoopChainSpec(stages), {});
  for (const kchain::GraphPolicy policy : policies) {
    const std::string name = ChainLengthName(stages, KchainVariant(*device, policy));
    if (!function.ok()) {
      RecordFailure(name, function.status().ToString());
      continue;
    }
    kchain::InstanceOptions options;
    options.graph = policy;
    auto created = CreateCountingInstance(*function, options);
    if (!created.ok()) {
      RecordFailure(name, created.status().ToString());
      continue;
    }
    std::shared_ptr<kchain::Instance> instance = *created;
    Status check = CheckNoopRuns(
        stages, [&] { return instance->RunStaged(sizeof(float)); },
        instance->output_staging().data());
    if (check.ok() && policy == kchain::GraphPolicy::kAuto &&
        instance->exec_mode() != kchain::ExecMode::kGraph) {
      check = kchain::InternalError("no graph to replay: " + instance->graph_status());
    }
    if (!check.ok()) {
      RecordFailure(name, check.ToString());
      continue;
    }
    Configure(benchmark::RegisterBenchmark(
        name.c_str(), [instance, stages, name](benchmark::State& state) {
          const void* out = instance->output_staging().data();
          const float before = ReadFloat(out);
          kchain::RunTimings timings;
          StageTimes times;
          bool ok = true;
          for (auto _ : state) {
            Status s = instance->RunStaged(sizeof(float), &timings);
            if (!s.ok()) {
              FailRun(state, name, s.ToString());
              ok = false;
              break;
            }
            times.Add(timings);
          }
          if (!ok || !NoopLoopCorrect(state, name, stages, before, ReadFloat(out))) return;
          ReportChainCounters(state, stages);
          times.Report(state);
          state.SetLabel(std::string(kchain::ExecModeName(timings.mode)));
        }));
  }
}

// --- Correctness of a copy: the output equals the input, byte for byte.

// Fills `bytes` with a pseudo-random pattern that depends on `seed` (splitmix64).
void FillPattern(std::span<std::byte> bytes, uint64_t seed) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull;
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    x += 0x9e3779b97f4a7c15ull;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    std::memcpy(bytes.data() + i, &z, 8);
  }
  for (; i < bytes.size(); ++i) bytes[i] = static_cast<std::byte>(seed + i);
}

// Writes a number never written before at both ends of `bytes`, so that a run that copies
// nothing leaves a stale output that no longer matches.
void Stamp(std::span<std::byte> bytes) {
  static uint64_t last = 0;
  const uint64_t stamp = ++last;
  const size_t n = std::min(bytes.size(), sizeof stamp);
  std::memcpy(bytes.data(), &stamp, n);
  std::memcpy(bytes.data() + bytes.size() - n, &stamp, n);
}

bool SameBytes(const void* a, const void* b, size_t n) { return std::memcmp(a, b, n) == 0; }

// Runs `run` with two different inputs and then the first again; each output must equal its
// input. Catches missing or partial copies and outputs left over from an earlier run.
Status CheckCopyRuns(std::span<std::byte> input, const std::function<Status()>& run,
                     const void* out) {
  for (const uint64_t seed : {1, 2, 1}) {
    FillPattern(input, seed);
    KCHAIN_RETURN_IF_ERROR(run());
    if (!SameBytes(input.data(), out, input.size())) {
      return kchain::InternalError("the output differs from the input (pattern " +
                                   std::to_string(seed) + ")");
    }
  }
  return Status();
}

void ReportCopyCounters(benchmark::State& state, size_t bytes) {
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(2 * bytes));
  state.counters["bytes"] = static_cast<double>(bytes);
}

// Creates and checks the kchain variant of the S-byte copy on one device (graph auto on CUDA,
// direct on the host, which has no graphs). A variant that cannot be created or checked is
// recorded as failed, not timed.
void RegisterCopySizeKchain(const CopySize& size, const std::shared_ptr<kchain::Device>& device,
                            const std::shared_ptr<const kchain::Library>& library) {
  const bool cuda = device->kind() == kchain::DeviceKind::kCuda;
  const kchain::GraphPolicy policy =
      cuda ? kchain::GraphPolicy::kAuto : kchain::GraphPolicy::kDisabled;
  const std::string name = CopySizeName(size, KchainVariant(*device, policy));
  const size_t bytes = size.bytes;
  std::shared_ptr<kchain::Instance> instance;
  const auto create_and_check = [&]() -> Status {
    KCHAIN_ASSIGN_OR_RETURN(auto function,
                            kchain::Function::Create(device, library, CopySpec(bytes), {}));
    kchain::InstanceOptions options;
    options.graph = policy;
    KCHAIN_ASSIGN_OR_RETURN(instance, kchain::Instance::Create(function, options));
    KCHAIN_RETURN_IF_ERROR(CheckCopyRuns(
        instance->input_staging(), [&] { return instance->RunStaged(bytes); },
        instance->output_staging().data()));
    if (cuda && instance->exec_mode() != kchain::ExecMode::kGraph) {
      return kchain::InternalError("no graph to replay: " + instance->graph_status());
    }
    return Status();
  };
  if (Status check = create_and_check(); !check.ok()) {
    RecordFailure(name, check.ToString());
    return;
  }
  Configure(benchmark::RegisterBenchmark(name.c_str(), [instance, bytes,
                                                        name](benchmark::State& state) {
    Stamp(instance->input_staging());
    kchain::RunTimings timings;
    StageTimes times;
    bool ok = true;
    for (auto _ : state) {
      Status s = instance->RunStaged(bytes, &timings);
      if (!s.ok()) {
        FailRun(state, name, s.ToString());
        ok = false;
        break;
      }
      times.Add(timings);
    }
    if (!ok) return;
    if (!SameBytes(instance->input_staging().data(), instance->output_staging().data(), bytes)) {
      FailRun(state, name, "the output differs from the input");
      return;
    }
    ReportCopyCounters(state, bytes);
    times.Report(state);
    state.SetLabel(std::string(kchain::ExecModeName(timings.mode)));
  }));
}

#ifdef KCHAIN_BENCH_CUDA
using kchain::bench::NativeChain;

// Registers one native variant: `graph` replays the chain from a CUDA graph. `before` runs
// ahead of the timed loop; `after` checks the output once it is over and sets the counters.
void RegisterNativeVariant(const std::string& name, std::shared_ptr<NativeChain> chain, bool graph,
                           std::function<void(benchmark::State&)> before,
                           std::function<void(benchmark::State&)> after) {
  Configure(benchmark::RegisterBenchmark(
      name.c_str(), [chain, graph, name, before, after](benchmark::State& state) {
        before(state);
        std::string err;
        bool ok = true;
        for (auto _ : state) {
          if (!(graph ? chain->RunGraph(&err) : chain->Run(&err))) {
            FailRun(state, name, err);
            ok = false;
            break;
          }
        }
        if (ok) after(state);
      }));
}

Status NativeRun(const std::shared_ptr<NativeChain>& chain, bool graph) {
  std::string err;
  if (!(graph ? chain->RunGraph(&err) : chain->Run(&err))) return kchain::InternalError(err);
  return Status();
}

void RegisterChainLengthNative(int stages) {
  std::string err;
  std::shared_ptr<NativeChain> chain = kchain::bench::MakeNativeNoopChain(stages, &err);
  for (const bool graph : {false, true}) {
    const std::string name = ChainLengthName(stages, graph ? "native_graph" : "native_direct");
    if (chain == nullptr) {
      RecordFailure(name, err);
      continue;
    }
    std::memset(chain->input(), 0, chain->input_bytes());
    Status check = CheckNoopRuns(
        stages, [&] { return NativeRun(chain, graph); }, chain->output());
    if (!check.ok()) {
      RecordFailure(name, check.ToString());
      continue;
    }
    auto before = std::make_shared<float>(0);
    RegisterNativeVariant(
        name, chain, graph,
        [chain, before](benchmark::State&) { *before = ReadFloat(chain->output()); },
        [chain, before, stages, name](benchmark::State& state) {
          if (NoopLoopCorrect(state, name, stages, *before, ReadFloat(chain->output()))) {
            ReportChainCounters(state, stages);
          }
        });
  }
}

void RegisterCopySizeNative(const CopySize& size) {
  struct Variant {
    const char* name;
    bool with_kernel;
    bool graph;
  };
  std::shared_ptr<NativeChain> chains[2];  // without and with the copy kernel
  std::string errors[2];
  for (const Variant v :
       {Variant{"native_memcpy", false, false}, Variant{"native_copy_kernel", true, false},
        Variant{"native_copy_kernel_graph", true, true}}) {
    const std::string name = CopySizeName(size, v.name);
    std::shared_ptr<NativeChain>& chain = chains[v.with_kernel];
    std::string& err = errors[v.with_kernel];
    if (chain == nullptr && err.empty()) {
      chain = kchain::bench::MakeNativeCopy(size.bytes, v.with_kernel, CopyGrid(size.bytes),
                                            kCopyBlock, &err);
      if (chain == nullptr && err.empty()) err = "cannot create the native copy";
    }
    if (chain == nullptr) {
      RecordFailure(name, err);
      continue;
    }
    std::span<std::byte> input(static_cast<std::byte*>(chain->input()), chain->input_bytes());
    Status check = CheckCopyRuns(
        input, [&] { return NativeRun(chain, v.graph); }, chain->output());
    if (!check.ok()) {
      RecordFailure(name, check.ToString());
      continue;
    }
    const size_t bytes = size.bytes;
    RegisterNativeVariant(
        name, chain, v.graph, [input](benchmark::State&) { Stamp(input); },
        [chain, input, bytes, name](benchmark::State& state) {
          if (!SameBytes(input.data(), chain->output(), bytes)) {
            FailRun(state, name, "the output differs from the input");
            return;
          }
          ReportCopyCounters(state, bytes);
        });
  }
}
#endif  // KCHAIN_BENCH_CUDA

// ---------------------------------------------------------------------------------------------
// Reporting: the console output plus closing tables from the medians of this run.

class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      const bool median = run.run_type == Run::RT_Aggregate && run.aggregate_name == "median";
      const bool single = run.run_type == Run::RT_Iteration && run.repetitions <= 1;
      if (median || single) medians_[run.run_name.function_name] = run.GetAdjustedRealTime();
    }
  }

  // The samples: each kchain variant against the native direct run.
  void PrintTable(const std::string& device) const {
    std::printf("\nHot path, median microseconds per run on %s (same process, same run):\n",
                device.c_str());
    std::printf("  %-34s %12s %14s %14s\n", "benchmark", "median us", "vs native", "over native");
    for (const auto& [name, us] : medians_) {
      if (name.starts_with("chain_len/") || name.starts_with("copy_size/")) continue;
      const auto slash = name.find('/');
      const std::string sample = name.substr(0, slash);
      const auto native = medians_.find(sample + "/native_direct");
      if (native != medians_.end() && name != native->first) {
        std::printf("  %-34s %12.2f %13.2fx %+13.2f us\n", name.c_str(), us, us / native->second,
                    us - native->second);
      } else {
        std::printf("  %-34s %12.2f %14s %14s\n", name.c_str(), us, "-", "-");
      }
    }
  }

  void PrintChainLengthTable(const std::string& device) const {
    std::printf(
        "\nChain length: N bench_noop stages (1 block, 1 thread), 4-byte input and output "
        "copies, one sync;\nmedian microseconds per run on %s; ratios kchain / native:\n",
        device.c_str());
    const char* kRow = "  %-12s %9s %9s %9s %9s %9s %9s %11s\n";
    std::printf(kRow, "stages", "native", "native", "kchain", "kchain", "direct", "graph",
                "kchain host");
    std::printf(kRow, "", "direct", "graph", "direct", "graph", "ratio", "ratio", "direct");
    const char* kVariants[] = {"native_direct", "native_graph", "kchain_cuda_direct",
                               "kchain_cuda_graph", "kchain_host_direct"};
    const auto print = [&](const std::string& label, const Cell(&c)[5], int digits) {
      std::printf(kRow, label.c_str(), Us(c[0], digits).c_str(), Us(c[1], digits).c_str(),
                  Us(c[2], digits).c_str(), Us(c[3], digits).c_str(), Ratio(c[2], c[0]).c_str(),
                  Ratio(c[3], c[1]).c_str(), Us(c[4], digits).c_str());
    };
    Cell first[5], last[5];
    for (const int n : kChainLengths) {
      Cell row[5];
      for (int v = 0; v < 5; ++v) row[v] = Median(ChainLengthName(n, kVariants[v]));
      print(std::to_string(n), row, 2);
      for (int v = 0; v < 5; ++v) (n == kChainLengths[0] ? first : last)[v] = row[v];
    }
    // The cost of one more stage: the slope between the shortest and the longest chain.
    constexpr int kSpan = kChainLengths[std::size(kChainLengths) - 1] - kChainLengths[0];
    Cell slope[5];
    for (int v = 0; v < 5; ++v) {
      slope[v] = first[v];
      slope[v].ok = first[v].ok && last[v].ok;
      slope[v].value = (last[v].value - first[v].value) / kSpan;
    }
    print("us per stage", slope, 3);
  }

  void PrintCopySizeTable(const std::string& device) const {
    std::printf(
        "\nInput size: S bytes H2D, one bench_copy stage, S bytes D2H, one sync; GB/s = 2 S / "
        "median run time\n(10^9 bytes/s) on %s; kchain cuda runs from a graph, native "
        "memcpy has no kernel:\n",
        device.c_str());
    std::printf("  %7s %10s %10s %10s %10s %12s %12s %10s %10s\n", "size", "native", "native",
                "native", "kchain", "kchain /", "kchain /", "kchain", "kchain");
    std::printf("  %7s %10s %10s %10s %10s %12s %12s %10s %10s\n", "", "memcpy", "kernel",
                "kern graph", "cuda graph", "kern graph", "memcpy", "cuda us", "host");
    for (const CopySize& size : kCopySizes) {
      const auto gbs = [&](const char* variant) {
        Cell c = Median(CopySizeName(size, variant));
        if (c.ok) c.value = 2.0 * static_cast<double>(size.bytes) / (c.value * 1e-6) / 1e9;
        return c;
      };
      const Cell nm = gbs("native_memcpy"), nk = gbs("native_copy_kernel"),
                 ng = gbs("native_copy_kernel_graph"), kg = gbs("kchain_cuda_graph"),
                 kh = gbs("kchain_host_direct");
      const Cell kg_us = Median(CopySizeName(size, "kchain_cuda_graph"));
      if (!nm.ran && !nk.ran && !ng.ran && !kg.ran && !kh.ran) continue;
      std::printf("  %7s %10s %10s %10s %10s %12s %12s %10s %10s\n", size.label, Us(nm).c_str(),
                  Us(nk).c_str(), Us(ng).c_str(), Us(kg).c_str(), Ratio(kg, ng, 3).c_str(),
                  Ratio(kg, nm, 3).c_str(), Us(kg_us, 1).c_str(), Us(kh).c_str());
    }
  }

 private:
  struct Cell {
    bool ran = false;  // registered and run (or failed)
    bool ok = false;   // a number to show
    double value = 0;
  };

  Cell Median(const std::string& name) const {
    if (Failures().count(name) != 0) return {true, false, 0};
    const auto it = medians_.find(name);
    if (it == medians_.end()) return {};
    return {true, true, it->second};
  }
  static std::string Us(const Cell& c, int digits = 2) {
    if (!c.ok) return c.ran ? "FAILED" : "-";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*f", digits, c.value);
    return buf;
  }
  static std::string Ratio(const Cell& a, const Cell& b, int digits = 2) {
    if (!a.ok || !b.ok) return "-";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*fx", digits, a.value / b.value);
    return buf;
  }

  std::map<std::string, double> medians_;
};

// The arguments for Google Benchmark: ours (--kchain_quick) taken out, a --benchmark_min_time
// suffix "s" dropped, and, for a quick run, a short --benchmark_min_time unless one was given.
// Sets g_quick. The strings live as long as the process.
std::vector<char*> PrepareArguments(int argc, char** argv) {
  static std::vector<std::string> storage;
  constexpr std::string_view kMinTime = "--benchmark_min_time=";
  const char* env = std::getenv("KCHAIN_BENCH_QUICK");
  g_quick = env != nullptr && *env != '\0' && std::string_view(env) != "0";
  bool min_time_given = false;
  storage.reserve(static_cast<size_t>(argc) + 1);
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (i > 0 && arg == "--kchain_quick") {
      g_quick = true;
      continue;
    }
    if (i > 0 && arg.starts_with(kMinTime)) {
      min_time_given = true;
      if (arg.ends_with("s")) arg.pop_back();
    }
    storage.push_back(std::move(arg));
  }
  if (g_quick && !min_time_given) storage.push_back(std::string(kMinTime) + "0.01");
  std::vector<char*> args;
  for (std::string& arg : storage) args.push_back(arg.data());
  args.push_back(nullptr);
  return args;
}

int Fatal(const Status& s) {
  std::fprintf(stderr, "%s\n", s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args = PrepareArguments(argc, argv);
  int args_count = static_cast<int>(args.size()) - 1;
  benchmark::Initialize(&args_count, args.data());
  if (benchmark::ReportUnrecognizedArguments(args_count, args.data())) return 2;

  std::shared_ptr<kchain::Device> cuda;
#ifdef KCHAIN_BENCH_CUDA
  if (kchain::Device::CudaDeviceCount() > 0) {
    auto opened = kchain::Device::Open(kchain::DeviceKind::kCuda);
    if (!opened.ok()) {
      std::fprintf(stderr, "cannot open the GPU: %s\n", opened.status().ToString().c_str());
      return 1;
    }
    cuda = *opened;
  }
#endif
  auto host_or = kchain::Device::Open(kchain::DeviceKind::kHost);
  if (!host_or.ok()) return Fatal(host_or.status());
  const std::shared_ptr<kchain::Device> host = *host_or;
  const std::string device_name = cuda ? cuda->name() : "host CPU";

  // The samples.
  for (const std::string sample : {"mnist_cnn", "vecadd"}) {
#ifdef KCHAIN_BENCH_CUDA
    if (cuda) {
      std::vector<std::byte> cuda_reference;
      Status s = RegisterNative(sample, &cuda_reference);
      if (s.ok()) s = RegisterKchain(sample, cuda, &cuda_reference);
      if (!s.ok()) return Fatal(s);
    }
#endif
    std::vector<std::byte> host_reference;
    Status s = RegisterKchain(sample, host, &host_reference);
    if (!s.ok()) return Fatal(s);
  }

  // The bench kernels: chain length, then input size. From here on a variant that cannot be
  // set up or checked is recorded as failed and the others still run.
  const auto open_kernels = [](const kchain::Device& device) {
    auto lib = OpenBenchKernels(device);
    if (lib.ok()) return *lib;
    RecordFailure("bench_kernels_" + std::string(kchain::DeviceKindName(device.kind())),
                  lib.status().ToString());
    return std::shared_ptr<const kchain::Library>();
  };
  const auto cuda_kernels = cuda ? open_kernels(*cuda) : nullptr;
  const auto host_kernels = open_kernels(*host);
  const size_t host_max = g_quick ? kHostQuickMaxCopyBytes : kHostMaxCopyBytes;
  for (const int stages : kChainLengths) {
#ifdef KCHAIN_BENCH_CUDA
    if (cuda) RegisterChainLengthNative(stages);
#endif
    if (cuda_kernels) RegisterChainLengthKchain(stages, cuda, cuda_kernels);
    if (host_kernels) RegisterChainLengthKchain(stages, host, host_kernels);
  }
  for (const CopySize& size : kCopySizes) {
#ifdef KCHAIN_BENCH_CUDA
    if (cuda) RegisterCopySizeNative(size);
#endif
    if (cuda_kernels) RegisterCopySizeKchain(size, cuda, cuda_kernels);
    if (host_kernels && size.bytes <= host_max) RegisterCopySizeKchain(size, host, host_kernels);
  }

  benchmark::AddCustomContext("kchain_device", device_name);
  benchmark::AddCustomContext("kchain_quick", g_quick ? "true" : "false");
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.PrintTable(device_name);
  reporter.PrintChainLengthTable(device_name);
  reporter.PrintCopySizeTable(device_name);
  benchmark::Shutdown();

  if (!Failures().empty()) {
    std::printf("\n%zu variant(s) FAILED their correctness check or a run; not reported:\n",
                Failures().size());
    for (const auto& [name, why] : Failures()) std::printf("  %s: %s\n", name.c_str(), why.c_str());
    return 1;
  }
  return 0;
}
