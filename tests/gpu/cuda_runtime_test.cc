// The CUDA backend, checked against the host backend as the reference. Label `gpu`: runs only
// on a machine with a GPU (ctest -L gpu); elsewhere every test reports SKIPPED, never passed.
//
// Each test runs in its own process under ctest (gtest_discover_tests), because the fault
// tests poison the CUDA context of their process on purpose. They are defined last so that
// running the binary directly also works.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "alloc_counter.h"
#include "kchain/function.h"
#include "kchain/manifest.h"
#include "test_util.h"

namespace kchain {
namespace {

using testing::Bytes;
using testing::FloatSpec;
using testing::MutableBytes;
using testing::SampleFile;
using testing::TestLibrary;

template <typename T>
std::vector<T> ReadVector(const std::string& path) {
  auto bytes = ReadFileToString(path);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  std::vector<T> out(bytes.ok() ? bytes->size() / sizeof(T) : 0);
  if (!out.empty()) std::memcpy(out.data(), bytes->data(), out.size() * sizeof(T));
  return out;
}

class Gpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Device::CudaDeviceCount() == 0) {
      GTEST_SKIP() << "NOT RUN: no CUDA device visible (run on the GPU machine)";
    }
    auto cuda = Device::Open(DeviceKind::kCuda);
    ASSERT_TRUE(cuda.ok()) << cuda.status();
    cuda_ = *cuda;
    host_ = testing::HostDevice();
  }

  // Loads a sample for `device` from its built folder.
  testing::Loaded LoadSample(const std::string& name, const std::shared_ptr<Device>& device,
                             InstanceOptions options = {}) {
    auto manifest = LoadManifestFile(SampleFile(name, "manifest.json"));
    EXPECT_TRUE(manifest.ok()) << manifest.status();
    if (!manifest.ok()) return {};
    auto lib = ManifestLibraryFor(*manifest, device->kind());
    EXPECT_TRUE(lib.ok()) << lib.status();
    if (!lib.ok()) return {};
    return testing::Load(device, *lib, manifest->spec, ReadVector<float>(manifest->constants),
                         options);
  }

  std::shared_ptr<Device> cuda_, host_;
};

TEST_F(Gpu, DeviceDescribesItself) {
  EXPECT_EQ(cuda_->kind(), DeviceKind::kCuda);
  EXPECT_NE(cuda_->name().find("sm_"), std::string::npos) << cuda_->name();
  EXPECT_EQ(cuda_->limits().max_threads_per_block, 1024);
  EXPECT_GT(cuda_->limits().total_memory_bytes, size_t{1} << 30);
  EXPECT_FALSE(cuda_->broken());
  std::printf("device: %s\n", cuda_->name().c_str());
}

TEST_F(Gpu, HostLibraryIsTheWrongTarget) {
  auto lib = Library::Open(TestLibrary("test_kernels_host"), DeviceKind::kCuda);
  ASSERT_FALSE(lib.ok());
  EXPECT_NE(lib.status().message().find("targets 'host'"), std::string::npos) << lib.status();
}

TEST_F(Gpu, SpecsBeyondDeviceLimitsAreRejected) {
  auto lib = Library::Open(TestLibrary("test_kernels_cuda"), DeviceKind::kCuda);
  ASSERT_TRUE(lib.ok()) << lib.status();
  FunctionSpec spec = FloatSpec({"noop"}, 4);
  spec.chain[0].block = 2048;
  auto fn = Function::Create(cuda_, *lib, spec, {});
  EXPECT_EQ(fn.status().code(), StatusCode::kInvalidArgument);
  spec = FloatSpec({"noop"}, 4);
  spec.tmp_bytes = cuda_->limits().total_memory_bytes + 1;
  EXPECT_EQ(Function::Create(cuda_, *lib, spec, {}).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(Gpu, VecaddMatchesTheHostReferenceExactly) {
  auto gpu = LoadSample("vecadd", cuda_);
  auto ref = LoadSample("vecadd", host_);
  ASSERT_TRUE(gpu.instance && ref.instance);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1e4f, 1e4f);
  std::vector<float> input(1000000), out(1000000), expected(1000000);
  for (int round = 0; round < 4; ++round) {
    for (auto& v : input) v = dist(rng);
    std::fill(out.begin(), out.end(), std::nanf(""));  // poison: every element must be written
    RunTimings t;
    KCHAIN_ASSERT_OK(gpu.instance->Run(Bytes(input), MutableBytes(out), &t));
    KCHAIN_ASSERT_OK(ref.instance->Run(Bytes(input), MutableBytes(expected)));
    ASSERT_EQ(std::memcmp(out.data(), expected.data(), out.size() * 4), 0) << "round " << round;
    // First run direct, later ones replayed from the captured graph.
    EXPECT_EQ(t.mode, round == 0 ? ExecMode::kDirect : ExecMode::kGraph) << round;
  }
}

TEST_F(Gpu, CnnMatchesTheHostReferenceWithin1e5AndGivesTheSameLabels) {
  auto gpu = LoadSample("mnist_cnn", cuda_);
  auto ref = LoadSample("mnist_cnn", host_);
  ASSERT_TRUE(gpu.instance && ref.instance);
  const auto images = ReadVector<float>(SampleFile("mnist_cnn", "heldout_images.bin"));
  const auto labels = ReadVector<uint8_t>(SampleFile("mnist_cnn", "heldout_labels.bin"));
  std::ifstream report_file(SampleFile("mnist_cnn", "report.json"));
  const auto report = nlohmann::json::parse(report_file);
  ASSERT_EQ(images.size(), labels.size() * 784);
  size_t correct = 0, same_label = 0;
  double worst = 0;
  std::vector<float> got(10), want(10);
  for (size_t i = 0; i < labels.size(); ++i) {
    const auto image = std::as_bytes(std::span(images.data() + i * 784, 784));
    std::fill(got.begin(), got.end(), std::nanf(""));
    KCHAIN_ASSERT_OK(gpu.instance->Run(image, MutableBytes(got)));
    KCHAIN_ASSERT_OK(ref.instance->Run(image, MutableBytes(want)));
    double diff = 0, norm = 0;
    for (int k = 0; k < 10; ++k) {
      diff += (got[k] - want[k]) * double(got[k] - want[k]);
      norm += want[k] * double(want[k]);
    }
    const double rel = std::sqrt(diff / norm);
    ASSERT_FALSE(std::isnan(rel)) << "image " << i;
    worst = std::max(worst, rel);
    EXPECT_LE(rel, 1e-5) << "image " << i;
    const auto g = std::max_element(got.begin(), got.end()) - got.begin();
    const auto w = std::max_element(want.begin(), want.end()) - want.begin();
    if (g == w) ++same_label;
    if (g == labels[i]) ++correct;
  }
  EXPECT_EQ(same_label, labels.size());
  EXPECT_EQ(correct, report["heldout_correct"].get<size_t>());
  std::printf("cnn: %zu/%zu correct on the GPU, worst relative error vs host %.3g\n", correct,
              labels.size(), worst);
  EXPECT_EQ(gpu.instance->exec_mode(), ExecMode::kGraph) << gpu.instance->graph_status();
}

TEST_F(Gpu, GraphReplayEqualsDirectLaunch) {
  InstanceOptions direct_only;
  direct_only.graph = GraphPolicy::kDisabled;
  for (const char* sample : {"mnist_cnn", "vecadd"}) {
    auto graph = LoadSample(sample, cuda_);
    auto direct = LoadSample(sample, cuda_, direct_only);
    ASSERT_TRUE(graph.instance && direct.instance);
    const size_t in_floats = graph.instance->spec().max_input_bytes / 4;
    const size_t out_floats = graph.instance->spec().out_bytes / 4;
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> dist(0, 1);
    std::vector<float> input(in_floats), a(out_floats), b(out_floats);
    for (int run = 0; run < 20; ++run) {
      for (auto& v : input) v = dist(rng);
      RunTimings ta, tb;
      KCHAIN_ASSERT_OK(graph.instance->Run(Bytes(input), MutableBytes(a), &ta));
      KCHAIN_ASSERT_OK(direct.instance->Run(Bytes(input), MutableBytes(b), &tb));
      ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << sample << " run " << run;
      EXPECT_EQ(tb.mode, ExecMode::kDirect);
      if (run > 0) {
        EXPECT_EQ(ta.mode, ExecMode::kGraph) << sample;
      }
    }
    EXPECT_EQ(graph.instance->stats().graph_runs, 19u) << sample;
    EXPECT_EQ(graph.instance->graph_status(), "captured");
    EXPECT_EQ(direct.instance->stats().graph_runs, 0u);
  }
}

TEST_F(Gpu, StageTimingsAreMeasuredInGraphMode) {
  InstanceOptions every_run;
  every_run.stage_timing_period = 1;
  auto gpu = LoadSample("vecadd", cuda_, every_run);
  ASSERT_TRUE(gpu.instance);
  std::vector<float> input(1000000, 1), out(1000000);
  RunTimings t;
  for (int i = 0; i < 3; ++i)
    KCHAIN_ASSERT_OK(gpu.instance->Run(Bytes(input), MutableBytes(out), &t));
  EXPECT_EQ(t.mode, ExecMode::kGraph);
  EXPECT_TRUE(t.stages_timed);
  // 4 MB each way and a 12 MB kernel: all measurably above zero.
  EXPECT_GT(t.input_copy_us, 1);
  EXPECT_GT(t.chain_us, 0.5);
  EXPECT_GT(t.output_copy_us, 1);
  EXPECT_GT(t.total_us, t.input_copy_us + t.chain_us + t.output_copy_us);
}

// kernel.h's launcher rules: several kernels per launcher, cudaMemsetAsync on tmp and
// cudaGetLastError / cudaPeekAtLastError are all fine, graph capture included.
TEST_F(Gpu, LauncherWithMemsetSeveralKernelsAndErrorChecksIsCapturedIntoAGraph) {
  std::vector<float> constants(256);
  for (size_t i = 0; i < constants.size(); ++i) constants[i] = float(i);
  auto loaded = testing::Load(cuda_, TestLibrary("test_kernels_cuda"),
                              FloatSpec({"memset_two_kernels_checked"}, 256, 256), constants);
  ASSERT_TRUE(loaded.instance);
  std::vector<float> input(256), out(256);
  for (int run = 0; run < 5; ++run) {
    for (size_t i = 0; i < input.size(); ++i) input[i] = float(run * 1000 + i);
    RunTimings t;
    KCHAIN_ASSERT_OK(loaded.instance->Run(Bytes(input), MutableBytes(out), &t));
    EXPECT_EQ(t.mode, run == 0 ? ExecMode::kDirect : ExecMode::kGraph) << run;
    for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], 2 * (input[i] + constants[i])) << i;
  }
  EXPECT_EQ(loaded.instance->graph_status(), "captured");
}

TEST_F(Gpu, LegacyStreamLauncherFallsBackToDirectAndStaysCorrect) {
  std::vector<float> constants(256);
  for (size_t i = 0; i < constants.size(); ++i) constants[i] = float(i);
  auto loaded = testing::Load(
      cuda_, TestLibrary("test_kernels_cuda"),
      FloatSpec({"add_constant_on_legacy_stream", "double_tmp_to_out"}, 256, 256), constants);
  ASSERT_TRUE(loaded.instance);
  std::vector<float> input(256), out(256);
  for (int run = 0; run < 5; ++run) {
    for (size_t i = 0; i < input.size(); ++i) input[i] = float(run * 1000 + i);
    RunTimings t;
    KCHAIN_ASSERT_OK(loaded.instance->Run(Bytes(input), MutableBytes(out), &t));
    EXPECT_EQ(t.mode, ExecMode::kDirect);
    for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], 2 * (input[i] + constants[i])) << i;
  }
  EXPECT_EQ(loaded.instance->exec_mode(), ExecMode::kDirect);
  EXPECT_NE(loaded.instance->graph_status().find("capture failed"), std::string::npos)
      << loaded.instance->graph_status();
  std::printf("fallback: %s\n", loaded.instance->graph_status().c_str());
}

TEST_F(Gpu, LauncherErrorNamesTheKernelAndTheInstanceStaysUsable) {
  auto lib = Library::Open(TestLibrary("test_kernels_cuda"), DeviceKind::kCuda);
  ASSERT_TRUE(lib.ok());
  auto fn = Function::Create(cuda_, *lib, FloatSpec({"noop", "report_error"}, 16), {});
  ASSERT_TRUE(fn.ok());
  auto inst = Instance::Create(*fn);
  ASSERT_TRUE(inst.ok());
  std::vector<float> in(16), out(16);
  for (int i = 0; i < 3; ++i) {
    Status s = (*inst)->Run(Bytes(in), MutableBytes(out));
    ASSERT_EQ(s.code(), StatusCode::kKernelError) << s;
    EXPECT_NE(s.message().find("kernel 'report_error' (stage 2 of 2"), std::string::npos) << s;
    EXPECT_EQ((*inst)->state(), InstanceState::kResident);
  }
  EXPECT_FALSE(cuda_->broken());
}

TEST_F(Gpu, BadLaunchConfigurationIsAKernelErrorNotAFault) {
  auto lib = Library::Open(TestLibrary("test_kernels_cuda"), DeviceKind::kCuda);
  ASSERT_TRUE(lib.ok());
  auto bad = Function::Create(cuda_, *lib, FloatSpec({"bad_launch_config"}, 16), {});
  ASSERT_TRUE(bad.ok());
  auto inst = Instance::Create(*bad);
  ASSERT_TRUE(inst.ok());
  std::vector<float> in(16, 1), out(16);
  Status s = (*inst)->Run(Bytes(in), MutableBytes(out));
  ASSERT_EQ(s.code(), StatusCode::kKernelError) << s;
  EXPECT_NE(s.message().find("kernel 'bad_launch_config'"), std::string::npos) << s;
  // CUDA 13 reports an oversized block as cudaErrorInvalidValue, older ones as
  // cudaErrorInvalidConfiguration; either way it is the launch that failed.
  EXPECT_NE(s.message().find("kernel launch failed"), std::string::npos) << s;
  EXPECT_FALSE(cuda_->broken());
  // The device is fine: another function runs.
  auto good = testing::Load(cuda_, TestLibrary("test_kernels_cuda"),
                            FloatSpec({"add_constant", "double_tmp_to_out"}, 16));
  ASSERT_TRUE(good.instance);
  KCHAIN_ASSERT_OK(good.instance->Run(Bytes(in), MutableBytes(out)));
  EXPECT_EQ(out[0], 2.0f);
}

TEST_F(Gpu, ParkAndWakeReleaseDeviceMemoryAndPreserveResults) {
  auto gpu = LoadSample("mnist_cnn", cuda_);
  ASSERT_TRUE(gpu.instance);
  Instance& inst = *gpu.instance;
  const auto images = ReadVector<float>(SampleFile("mnist_cnn", "heldout_images.bin"));
  const auto image = std::as_bytes(std::span(images.data(), 784));
  std::vector<float> before(10), after(10);
  for (int i = 0; i < 3; ++i) KCHAIN_ASSERT_OK(inst.Run(image, MutableBytes(before)));
  const size_t in_use = cuda_->memory_in_use();
  const size_t held = inst.device_bytes();
  KCHAIN_ASSERT_OK(inst.Park());
  EXPECT_EQ(cuda_->memory_in_use(), in_use - held);
  KCHAIN_ASSERT_OK(inst.Wake());
  RunTimings t;
  KCHAIN_ASSERT_OK(inst.Run(image, MutableBytes(after), &t));
  EXPECT_EQ(before, after);
  EXPECT_EQ(t.mode, ExecMode::kDirect);  // the graph held old pointers; it is re-captured
  KCHAIN_ASSERT_OK(inst.Run(image, MutableBytes(after), &t));
  EXPECT_EQ(t.mode, ExecMode::kGraph);
  EXPECT_EQ(before, after);
  EXPECT_EQ(inst.stats().constant_uploads, 2u);
  EXPECT_EQ(inst.stats().graph_captures, 2u);
}

TEST_F(Gpu, HotPathAllocatesNothingInGraphOrDirectMode) {
  for (GraphPolicy policy : {GraphPolicy::kAuto, GraphPolicy::kDisabled}) {
    InstanceOptions options;
    options.graph = policy;
    options.stage_timing_period = 3;  // timed and untimed runs both
    auto gpu = LoadSample("mnist_cnn", cuda_, options);
    ASSERT_TRUE(gpu.instance);
    std::vector<float> image(784, 0.5f), out(10);
    RunTimings t;
    for (int i = 0; i < 3; ++i) {
      KCHAIN_ASSERT_OK(gpu.instance->Run(Bytes(image), MutableBytes(out), &t));
    }
    ASSERT_EQ(t.mode, policy == GraphPolicy::kAuto ? ExecMode::kGraph : ExecMode::kDirect);
    const long counted = CountAllocations([&] {
      for (int i = 0; i < 1000; ++i) {
        (void)gpu.instance->Run(Bytes(image), MutableBytes(out), &t);
        (void)gpu.instance->RunStaged(784 * 4, &t);
      }
    });
    EXPECT_EQ(counted, 0) << ExecModeName(t.mode);
    EXPECT_EQ(gpu.instance->stats().failed_runs, 0u);
    std::printf(
        "cnn: 2000 hot runs in %s mode: %ld allocations by kchain, %ld inside the CUDA "
        "libraries\n",
        std::string(ExecModeName(t.mode)).c_str(), counted,
        alloc_counter::g_cuda_allocations.load());
  }
}

TEST_F(Gpu, ConcurrentInstancesRunCorrectlyOnSeparateStreams) {
  auto lib = Library::Open(TestLibrary("test_kernels_cuda"), DeviceKind::kCuda);
  ASSERT_TRUE(lib.ok());
  constexpr size_t kFloats = 1 << 16;
  std::vector<float> constants(kFloats);
  for (size_t i = 0; i < kFloats; ++i) constants[i] = float(i % 1000);
  FunctionSpec spec = FloatSpec({"add_constant", "double_tmp_to_out"}, kFloats, kFloats);
  for (auto& stage : spec.chain) stage = {stage.kernel, 64, 256};
  auto fn = Function::Create(cuda_, *lib, spec, Bytes(constants));
  ASSERT_TRUE(fn.ok()) << fn.status();
  std::atomic<int> failures{0}, mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      auto inst = Instance::Create(*fn);
      if (!inst.ok()) {
        ++failures;
        return;
      }
      std::vector<float> in(kFloats), out(kFloats);
      for (int r = 0; r < 200; ++r) {
        for (size_t i = 0; i < kFloats; i += 97) in[i] = float(t * 7 + r);
        if (!(*inst)->Run(Bytes(in), MutableBytes(out)).ok()) {
          ++failures;
          return;
        }
        for (size_t i = 0; i < kFloats; i += 97) {
          if (out[i] != 2 * (in[i] + constants[i])) {
            ++mismatches;
            return;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
}

// --- Faults. These poison the process's CUDA context; keep them last. ---

TEST_F(Gpu, FaultBreaksTheInstanceAndDeviceButNotTheProcess) {
  auto loaded = testing::Load(cuda_, TestLibrary("test_kernels_cuda"),
                              FloatSpec({"noop", "illegal_address"}, 16));
  ASSERT_TRUE(loaded.instance);
  std::vector<float> in(16), out(16);
  Status s = loaded.instance->Run(Bytes(in), MutableBytes(out));
  ASSERT_EQ(s.code(), StatusCode::kKernelError) << s;
  EXPECT_NE(s.message().find("illegal memory access"), std::string::npos) << s;
  EXPECT_NE(s.message().find("noop -> illegal_address"), std::string::npos) << s;
  EXPECT_NE(s.message().find("marked broken"), std::string::npos) << s;
  EXPECT_EQ(loaded.instance->state(), InstanceState::kBroken);
  EXPECT_TRUE(cuda_->broken());
  EXPECT_NE(cuda_->broken_reason().find("cudaErrorIllegalAddress"), std::string::npos);
  // Callers are told to stop routing here, clearly, every time.
  EXPECT_EQ(loaded.instance->Run(Bytes(in), MutableBytes(out)).code(), StatusCode::kUnavailable);
  EXPECT_EQ(loaded.instance->Park().code(), StatusCode::kUnavailable);
  EXPECT_EQ(loaded.instance->Wake().code(), StatusCode::kUnavailable);
  auto another = Instance::Create(loaded.function);
  EXPECT_EQ(another.status().code(), StatusCode::kUnavailable);
  loaded.instance.reset();  // destroying on a broken context does not crash
  std::printf("fault reported as: %s\n", s.ToString().c_str());
}

TEST_F(Gpu, DebugSyncNamesTheFaultingKernel) {
  InstanceOptions options;
  options.debug_sync = true;
  auto loaded = testing::Load(cuda_, TestLibrary("test_kernels_cuda"),
                              FloatSpec({"noop", "illegal_address", "noop"}, 16), {}, options);
  ASSERT_TRUE(loaded.instance);
  std::vector<float> in(16), out(16);
  Status s = loaded.instance->Run(Bytes(in), MutableBytes(out));
  ASSERT_EQ(s.code(), StatusCode::kKernelError) << s;
  EXPECT_NE(s.message().find("kernel 'illegal_address' (stage 2 of 3"), std::string::npos) << s;
  EXPECT_TRUE(cuda_->broken());
}

}  // namespace
}  // namespace kchain
