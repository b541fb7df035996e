// Micro-benchmarks of the hot path, in one process and one run: the samples' chains launched
// by a plain CUDA program (the native baseline), by the kchain runtime directly, and by the
// kchain runtime with graph replay. On machines without a GPU only the host backend is timed.
//
// Every variant is first checked to compute the same output as the others; the timings are
// reported only when they do. A table of medians and ratios, computed from the numbers of
// this run, closes the output.
//
//   kchain_micro_bench [--benchmark_repetitions=10] [google benchmark flags...]
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
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

// Median real time per benchmark name, collected while reporting, for the closing table.
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

  void PrintTable(const std::string& device) const {
    std::printf("\nHot path, median microseconds per run on %s (same process, same run):\n",
                device.c_str());
    std::printf("  %-34s %12s %14s %14s\n", "benchmark", "median us", "vs native", "over native");
    for (const auto& [name, us] : medians_) {
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

 private:
  std::map<std::string, double> medians_;
};

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
    benchmark::RegisterBenchmark(
        (prefix + v.name).c_str(),
        [instance, shared, output, staged = v.staged](benchmark::State& state) {
          kchain::RunTimings timings;
          double chain_us = 0;
          int64_t timed = 0;
          for (auto _ : state) {
            Status s = staged ? instance->RunStaged(shared->input.size(), &timings)
                              : instance->Run(shared->input, *output, &timings);
            if (!s.ok()) {
              state.SkipWithError(s.ToString().c_str());
              break;
            }
            if (timings.stages_timed) {
              chain_us += timings.chain_us;
              ++timed;
            }
          }
          if (timed > 0) state.counters["chain_us"] = chain_us / static_cast<double>(timed);
          state.SetLabel(std::string(kchain::ExecModeName(timings.mode)));
        })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
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
    benchmark::RegisterBenchmark((sample + (graph ? "/native_graph" : "/native_direct")).c_str(),
                                 [chain, graph](benchmark::State& state) {
                                   std::string err;
                                   for (auto _ : state) {
                                     if (!(graph ? chain->RunGraph(&err) : chain->Run(&err))) {
                                       state.SkipWithError(err.c_str());
                                       break;
                                     }
                                   }
                                 })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  }
  return Status();
}
#endif

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;

  std::string device_name = "host CPU";
  for (const std::string sample : {"mnist_cnn", "vecadd"}) {
    std::vector<std::byte> cuda_reference;
#ifdef KCHAIN_BENCH_CUDA
    if (kchain::Device::CudaDeviceCount() > 0) {
      auto cuda = kchain::Device::Open(kchain::DeviceKind::kCuda);
      if (!cuda.ok()) {
        std::fprintf(stderr, "cannot open the GPU: %s\n", cuda.status().ToString().c_str());
        return 1;
      }
      device_name = (*cuda)->name();
      Status s = RegisterNative(sample, &cuda_reference);
      if (s.ok()) s = RegisterKchain(sample, *cuda, &cuda_reference);
      if (!s.ok()) {
        std::fprintf(stderr, "%s\n", s.ToString().c_str());
        return 1;
      }
    }
#endif
    std::vector<std::byte> host_reference;
    auto host = kchain::Device::Open(kchain::DeviceKind::kHost);
    Status s = RegisterKchain(sample, *host, &host_reference);
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
  }
  benchmark::AddCustomContext("kchain_device", device_name);
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.PrintTable(device_name);
  benchmark::Shutdown();
  return 0;
}
