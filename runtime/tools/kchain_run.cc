// kchain-run: runs functions described by manifests through the runtime, in-process, and
// prints their output and their cold, warm and hot start timings.
//
//   kchain-run [--device auto|host|cuda] [--runs N] [--input FILE]
//              [--eval-images FILE --eval-labels FILE] [--debug-sync] [--no-graph]
//              MANIFEST...
//
// Exit status: 0 when every function ran, 1 when one failed, 2 on bad usage.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kchain/function.h"
#include "kchain/manifest.h"

namespace {

using kchain::Status;

struct Options {
  std::string device = "auto";
  int runs = 100;
  std::string input_file;
  std::string eval_images;
  std::string eval_labels;
  bool debug_sync = false;
  bool no_graph = false;
  uint32_t stage_timing_period = 64;
  std::vector<std::string> manifests;
};

void Usage(FILE* out) {
  std::fprintf(out,
               "usage: kchain-run [options] MANIFEST...\n"
               "Runs each function through the kchain runtime and prints its output and its\n"
               "cold / warm / hot start timings.\n\n"
               "  --device auto|host|cuda  device to run on (default auto: cuda if a GPU is "
               "visible)\n"
               "  --runs N                 hot runs to time (default 100)\n"
               "  --input FILE             raw input bytes (default: a deterministic pattern)\n"
               "  --eval-images FILE       classify every record of FILE (records of the input "
               "size)...\n"
               "  --eval-labels FILE       ...against these uint8 labels, print the accuracy\n"
               "  --debug-sync             synchronize after every stage (names faulting "
               "kernels)\n"
               "  --no-graph               never capture a CUDA graph\n"
               "  --stage-timing-period N  time the stages of every Nth run (default 64; 1 = "
               "all, 0 = none)\n");
}

bool ParseArgs(int argc, char** argv, Options* opt) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "kchain-run: %s needs a value\n", arg.c_str());
        return false;
      }
      *out = argv[++i];
      return true;
    };
    std::string v;
    if (arg == "-h" || arg == "--help") {
      Usage(stdout);
      std::exit(0);
    } else if (arg == "--device") {
      if (!value(&opt->device)) return false;
    } else if (arg == "--runs") {
      if (!value(&v)) return false;
      opt->runs = std::atoi(v.c_str());
      if (opt->runs < 1) {
        std::fprintf(stderr, "kchain-run: --runs must be a positive integer\n");
        return false;
      }
    } else if (arg == "--input") {
      if (!value(&opt->input_file)) return false;
    } else if (arg == "--eval-images") {
      if (!value(&opt->eval_images)) return false;
    } else if (arg == "--eval-labels") {
      if (!value(&opt->eval_labels)) return false;
    } else if (arg == "--debug-sync") {
      opt->debug_sync = true;
    } else if (arg == "--no-graph") {
      opt->no_graph = true;
    } else if (arg == "--stage-timing-period") {
      if (!value(&v)) return false;
      const long period = std::atol(v.c_str());
      if (period < 0 || v.find_first_not_of("0123456789") != std::string::npos) {
        std::fprintf(stderr, "kchain-run: --stage-timing-period must be a whole number\n");
        return false;
      }
      opt->stage_timing_period = static_cast<uint32_t>(period);
    } else if (!arg.empty() && arg[0] == '-') {
      std::fprintf(stderr, "kchain-run: unknown option %s\n", arg.c_str());
      return false;
    } else {
      opt->manifests.push_back(arg);
    }
  }
  if (opt->manifests.empty()) {
    std::fprintf(stderr, "kchain-run: no manifest given\n");
    return false;
  }
  if (opt->eval_images.empty() != opt->eval_labels.empty()) {
    std::fprintf(stderr, "kchain-run: --eval-images and --eval-labels go together\n");
    return false;
  }
  return true;
}

double Ms(std::chrono::nanoseconds ns) {
  return std::chrono::duration<double, std::milli>(ns).count();
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const size_t idx = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[idx];
}

std::string Preview(const kchain::TensorSpec& tensor, std::span<const std::byte> bytes) {
  std::string out = "[";
  const size_t elem = kchain::ElementSize(tensor.dtype);
  const size_t count = bytes.size() / elem, shown = std::min<size_t>(count, 10);
  char buf[64];
  for (size_t i = 0; i < shown; ++i) {
    const std::byte* p = bytes.data() + i * elem;
    switch (tensor.dtype) {
      case kchain::ElementType::kFloat32: {
        float f;
        std::memcpy(&f, p, 4);
        std::snprintf(buf, sizeof buf, "%.6g", f);
        break;
      }
      case kchain::ElementType::kFloat64: {
        double d;
        std::memcpy(&d, p, 8);
        std::snprintf(buf, sizeof buf, "%.10g", d);
        break;
      }
      default: {
        // Integers: sign-extend the signed types.
        uint64_t u = 0;
        std::memcpy(&u, p, elem);
        const bool is_signed = tensor.dtype == kchain::ElementType::kInt8 ||
                               tensor.dtype == kchain::ElementType::kInt16 ||
                               tensor.dtype == kchain::ElementType::kInt32 ||
                               tensor.dtype == kchain::ElementType::kInt64;
        if (is_signed && elem < 8 && (u >> (elem * 8 - 1)) != 0) u |= ~uint64_t{0} << (elem * 8);
        std::snprintf(buf, sizeof buf, is_signed ? "%lld" : "%llu",
                      static_cast<unsigned long long>(u));
      }
    }
    out += (i ? ", " : "") + std::string(buf);
  }
  if (count > shown) out += ", ... (" + std::to_string(count) + " elements)";
  return out + "]";
}

void PrintRun(const char* label, const kchain::RunTimings& t) {
  if (!t.stages_timed) {
    std::printf("  %-14s %9.1f us total (stages not timed on this run)  [%s]\n", label, t.total_us,
                std::string(kchain::ExecModeName(t.mode)).c_str());
    return;
  }
  std::printf("  %-14s %9.1f us total: input copy %.1f, chain %.1f, output copy %.1f  [%s]\n",
              label, t.total_us, t.input_copy_us, t.chain_us, t.output_copy_us,
              std::string(kchain::ExecModeName(t.mode)).c_str());
}

Status RunOne(const Options& opt, const std::shared_ptr<kchain::Device>& device,
              const std::string& path) {
  using Clock = std::chrono::steady_clock;
  KCHAIN_ASSIGN_OR_RETURN(kchain::Manifest manifest, kchain::LoadManifestFile(path));
  const kchain::FunctionSpec& spec = manifest.spec;
  std::printf("== %s  (%s)\n", manifest.name.empty() ? path.c_str() : manifest.name.c_str(),
              path.c_str());
  std::printf("  chain          %s\n", kchain::ChainToString(spec).c_str());

  std::string constants;
  if (!manifest.constants.empty()) {
    KCHAIN_ASSIGN_OR_RETURN(constants, kchain::ReadFileToString(manifest.constants));
  }
  std::vector<std::byte> input(spec.max_input_bytes);
  if (!opt.input_file.empty()) {
    KCHAIN_ASSIGN_OR_RETURN(std::string bytes, kchain::ReadFileToString(opt.input_file));
    input.resize(bytes.size());
    std::memcpy(input.data(), bytes.data(), bytes.size());
  } else if (spec.input.dtype == kchain::ElementType::kFloat32) {
    for (size_t i = 0; i < input.size() / 4; ++i) {
      const float v = static_cast<float>(i % 251) / 251.0f;
      std::memcpy(input.data() + 4 * i, &v, 4);
    }
  } else {
    for (size_t i = 0; i < input.size(); ++i) input[i] = static_cast<std::byte>(i % 251);
  }
  std::string eval_images, eval_labels;
  if (!opt.eval_images.empty()) {
    KCHAIN_ASSIGN_OR_RETURN(eval_images, kchain::ReadFileToString(opt.eval_images));
    KCHAIN_ASSIGN_OR_RETURN(eval_labels, kchain::ReadFileToString(opt.eval_labels));
    if (eval_images.size() != eval_labels.size() * spec.max_input_bytes) {
      return kchain::InvalidArgumentError("eval set: " + std::to_string(eval_images.size()) +
                                          " image bytes do not make " +
                                          std::to_string(eval_labels.size()) + " records of " +
                                          std::to_string(spec.max_input_bytes) + " bytes");
    }
    if (!eval_labels.empty()) std::memcpy(input.data(), eval_images.data(), input.size());
  }

  // Cold start: load the library, stage the constants, create the instance, run.
  const auto cold_start = Clock::now();
  KCHAIN_ASSIGN_OR_RETURN(std::string lib_path,
                          kchain::ManifestLibraryFor(manifest, device->kind()));
  KCHAIN_ASSIGN_OR_RETURN(auto library, kchain::Library::Open(lib_path, device->kind()));
  KCHAIN_ASSIGN_OR_RETURN(
      auto function,
      kchain::Function::Create(device, library, spec,
                               std::as_bytes(std::span(constants.data(), constants.size()))));
  kchain::InstanceOptions options;
  options.debug_sync = opt.debug_sync;
  options.stage_timing_period = opt.stage_timing_period;
  if (opt.no_graph) options.graph = kchain::GraphPolicy::kDisabled;
  KCHAIN_ASSIGN_OR_RETURN(auto instance, kchain::Instance::Create(function, options));
  std::vector<std::byte> output(spec.out_bytes);
  kchain::RunTimings first;
  KCHAIN_RETURN_IF_ERROR(instance->Run(input, output, &first));
  const double cold_ms =
      std::chrono::duration<double, std::milli>(Clock::now() - cold_start).count();

  std::printf("  load kernel    %9.3f ms  (dlopen + ABI checks of %s)\n",
              Ms(library->load_duration()), lib_path.c_str());
  std::printf(
      "  load constants %9.3f ms  (%zu bytes: pinned staging %.3f ms, upload %.3f ms)\n",
      Ms(function->constants_staging_duration()) + instance->timings().constants_upload_us / 1000.0,
      spec.constant_bytes, Ms(function->constants_staging_duration()),
      instance->timings().constants_upload_us / 1000.0);
  std::printf("  instance       %9.3f ms  (create: streams, staging, buffers, constants)\n",
              instance->timings().create_us / 1000.0);
  PrintRun("first run", first);
  std::printf("  cold start     %9.3f ms  (all of the above, with the graph capture: %.3f ms)\n",
              cold_ms, instance->timings().graph_capture_us / 1000.0);

  // Hot starts: the instance is resident.
  std::vector<double> totals, chains;
  kchain::RunTimings t;
  for (int i = 0; i < opt.runs; ++i) {
    KCHAIN_RETURN_IF_ERROR(instance->Run(input, output, &t));
    totals.push_back(t.total_us);
    if (t.stages_timed) chains.push_back(t.chain_us);
  }
  std::printf("  hot runs       %9.1f us median total, p99 %.1f us  (%d runs) [%s]\n",
              Percentile(totals, 0.5), Percentile(totals, 0.99), opt.runs,
              std::string(kchain::ExecModeName(t.mode)).c_str());
  if (!chains.empty()) {
    std::printf("  hot chain      %9.1f us median device time of the chain (%zu timed runs)\n",
                Percentile(chains, 0.5), chains.size());
  }
  std::printf("  exec mode      %s (%s)\n",
              std::string(kchain::ExecModeName(instance->exec_mode())).c_str(),
              instance->graph_status().c_str());

  // Warm start: park (device memory released), wake (re-allocate, re-upload), run.
  KCHAIN_RETURN_IF_ERROR(instance->Park());
  const auto warm_start = Clock::now();
  KCHAIN_RETURN_IF_ERROR(instance->Wake());
  kchain::RunTimings warm;
  KCHAIN_RETURN_IF_ERROR(instance->Run(input, output, &warm));
  std::printf("  warm start     %9.3f ms  (wake %.3f ms, then the run below)\n",
              std::chrono::duration<double, std::milli>(Clock::now() - warm_start).count(),
              instance->timings().wake_us / 1000.0);
  PrintRun("warm run", warm);

  std::printf("  output         %s %s\n",
              std::string(kchain::ElementTypeName(spec.output.dtype)).c_str(),
              Preview(spec.output, output).c_str());

  if (!eval_labels.empty()) {
    if (spec.output.dtype != kchain::ElementType::kFloat32) {
      return kchain::InvalidArgumentError("--eval-* needs a float32 output (scores per class)");
    }
    size_t correct = 0;
    const size_t classes = spec.out_bytes / 4;
    std::vector<float> scores(classes);
    for (size_t r = 0; r < eval_labels.size(); ++r) {
      KCHAIN_RETURN_IF_ERROR(
          instance->Run(std::as_bytes(std::span(eval_images.data() + r * spec.max_input_bytes,
                                                spec.max_input_bytes)),
                        std::as_writable_bytes(std::span(scores)), nullptr));
      const size_t predicted =
          static_cast<size_t>(std::max_element(scores.begin(), scores.end()) - scores.begin());
      if (predicted == static_cast<uint8_t>(eval_labels[r])) ++correct;
    }
    std::printf("  held-out set   %zu/%zu correct (%.2f%% accuracy)\n", correct, eval_labels.size(),
                100.0 * static_cast<double>(correct) / eval_labels.size());
  }
  return Status();
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (!ParseArgs(argc, argv, &opt)) {
    Usage(stderr);
    return 2;
  }
  kchain::StatusOr<std::shared_ptr<kchain::Device>> device = kchain::UnavailableError("unset");
  if (opt.device == "auto") {
    device = kchain::Device::OpenAuto();
  } else {
    auto kind = kchain::ParseDeviceKind(opt.device);
    if (!kind.ok()) {
      std::fprintf(stderr, "kchain-run: --device: %s\n", kind.status().message().c_str());
      return 2;
    }
    device = kchain::Device::Open(*kind);
  }
  if (!device.ok()) {
    std::fprintf(stderr, "kchain-run: cannot open device: %s\n",
                 device.status().ToString().c_str());
    return 1;
  }
  std::printf("device: %s (%s backend)\n", (*device)->name().c_str(),
              std::string(kchain::DeviceKindName((*device)->kind())).c_str());
  int rc = 0;
  for (const std::string& path : opt.manifests) {
    Status status = RunOne(opt, *device, path);
    if (!status.ok()) {
      std::fprintf(stderr, "kchain-run: %s: %s\n", path.c_str(), status.ToString().c_str());
      rc = 1;
    }
  }
  return rc;
}
