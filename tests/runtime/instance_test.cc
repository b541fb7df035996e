// Chain semantics on the host backend: tmp carries data between stages, out is returned,
// constants are uploaded once, park and wake preserve results, errors are reported cleanly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "kchain/function.h"
#include "test_util.h"

namespace kchain {
namespace {

using testing::Bytes;
using testing::FloatSpec;
using testing::HostDevice;
using testing::Load;
using testing::MutableBytes;
using testing::TestLibrary;

const std::string kLib = TestLibrary("test_kernels_host");

std::vector<float> Iota(size_t n, float start) {
  std::vector<float> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

TEST(Instance, TmpCarriesDataBetweenStagesAndOutIsReturned) {
  auto device = HostDevice();
  const auto constants = Iota(64, 100);
  auto loaded =
      Load(device, kLib, FloatSpec({"add_constant", "double_tmp_to_out"}, 64, 64), constants);
  ASSERT_TRUE(loaded.instance);
  const auto input = Iota(64, 1);
  std::vector<float> out(64, -1);
  RunTimings t;
  KCHAIN_ASSERT_OK(loaded.instance->Run(Bytes(input), MutableBytes(out), &t));
  for (size_t i = 0; i < 64; ++i) EXPECT_EQ(out[i], 2 * (input[i] + constants[i])) << i;
  EXPECT_EQ(t.mode, ExecMode::kDirect);
  EXPECT_TRUE(t.stages_timed);
  EXPECT_GE(t.total_us, t.chain_us);
  EXPECT_GT(t.total_us, 0);
}

TEST(Instance, LaunchersSeeTheStateTheRuntimeFilledIn) {
  auto device = HostDevice();
  FunctionSpec spec = FloatSpec({"describe_state"}, 32, 8);
  spec.chain[0] = {"describe_state", 7, 96};
  auto loaded = Load(device, kLib, spec, std::vector<float>(8, 1));
  ASSERT_TRUE(loaded.instance);
  // A shorter input than the capacity: input.len is this run's length.
  std::vector<float> input(5, 0);
  std::vector<uint64_t> out(16, 0);
  KCHAIN_ASSERT_OK(loaded.instance->Run(Bytes(input), MutableBytes(out)));
  EXPECT_EQ(out[0], sizeof(kchain_state_t));
  EXPECT_EQ(out[1], KCHAIN_ABI_VERSION);
  EXPECT_EQ(out[2], 20u);  // input.len
  EXPECT_EQ(out[3], 32u);  // constant.len
  EXPECT_EQ(out[4], 128u);
  EXPECT_EQ(out[5], 128u);
  EXPECT_EQ(out[6], 7u);   // grid
  EXPECT_EQ(out[7], 96u);  // block
  EXPECT_EQ(out[8], 1u);   // no stream on the host backend
}

TEST(Instance, ConstantsAreUploadedOncePerInstanceAcrossRuns) {
  auto device = HostDevice();
  const auto constants = Iota(16, 0.5f);
  auto loaded = Load(device, kLib, FloatSpec({"constant_to_out"}, 16, 16), constants);
  ASSERT_TRUE(loaded.instance);
  std::vector<float> input(16, 0), out(16, 0);
  for (int i = 0; i < 100; ++i) {
    KCHAIN_ASSERT_OK(loaded.instance->Run(Bytes(input), MutableBytes(out)));
    ASSERT_EQ(out, constants);
  }
  EXPECT_EQ(loaded.instance->stats().constant_uploads, 1u);
  EXPECT_EQ(loaded.instance->stats().runs, 100u);
  EXPECT_GT(loaded.instance->timings().constants_upload_us, 0);
}

TEST(Instance, EachRunCallsEachLauncherOnce) {
  auto device = HostDevice();
  auto loaded = Load(device, kLib, FloatSpec({"count_calls"}, 4));
  ASSERT_TRUE(loaded.instance);
  std::vector<float> input(4, 0);
  std::vector<uint64_t> out(2, 0);
  KCHAIN_ASSERT_OK(loaded.instance->Run(Bytes(input), MutableBytes(out)));
  const uint64_t first = out[0];
  for (int i = 0; i < 10; ++i)
    KCHAIN_ASSERT_OK(loaded.instance->Run(Bytes(input), MutableBytes(out)));
  EXPECT_EQ(out[0], first + 10);
}

TEST(Instance, ParkAndWakePreserveResults) {
  auto device = HostDevice();
  const size_t baseline = device->memory_in_use();
  const auto constants = Iota(256, 3);
  auto loaded =
      Load(device, kLib, FloatSpec({"add_constant", "double_tmp_to_out"}, 256, 256), constants);
  ASSERT_TRUE(loaded.instance);
  Instance& inst = *loaded.instance;
  const size_t resident = inst.device_bytes();
  EXPECT_EQ(resident, 4u * 256 * 4);
  EXPECT_EQ(device->memory_in_use(), baseline + resident);

  const auto input = Iota(256, -7);
  std::vector<float> before(256), after(256);
  KCHAIN_ASSERT_OK(inst.Run(Bytes(input), MutableBytes(before)));

  KCHAIN_ASSERT_OK(inst.Park());
  EXPECT_EQ(inst.state(), InstanceState::kParked);
  EXPECT_EQ(inst.device_bytes(), 0u);
  EXPECT_EQ(device->memory_in_use(), baseline);
  KCHAIN_ASSERT_OK(inst.Park());  // idempotent
  Status parked_run = inst.Run(Bytes(input), MutableBytes(after));
  EXPECT_EQ(parked_run.code(), StatusCode::kFailedPrecondition) << parked_run;

  KCHAIN_ASSERT_OK(inst.Wake());
  EXPECT_EQ(inst.state(), InstanceState::kResident);
  EXPECT_EQ(device->memory_in_use(), baseline + resident);
  KCHAIN_ASSERT_OK(inst.Run(Bytes(input), MutableBytes(after)));
  EXPECT_EQ(before, after);
  EXPECT_EQ(inst.stats().constant_uploads, 2u);
  EXPECT_EQ(inst.stats().parks, 1u);
  EXPECT_EQ(inst.stats().wakes, 1u);
  EXPECT_GT(inst.timings().wake_us, 0);
  KCHAIN_ASSERT_OK(inst.Wake());  // idempotent
  EXPECT_EQ(inst.stats().wakes, 1u);
}

TEST(Instance, DestroyReleasesDeviceMemory) {
  auto device = HostDevice();
  const size_t baseline = device->memory_in_use();
  {
    auto loaded = Load(device, kLib, FloatSpec({"noop"}, 1000, 10), std::vector<float>(10));
    ASSERT_TRUE(loaded.instance);
    EXPECT_GT(device->memory_in_use(), baseline);
  }
  EXPECT_EQ(device->memory_in_use(), baseline);
}

TEST(Instance, LauncherReportedErrorNamesKernelAndLeavesInstanceUsable) {
  auto device = HostDevice();
  auto loaded = Load(device, kLib, FloatSpec({"noop", "fail_on_short_input"}, 8));
  ASSERT_TRUE(loaded.instance);
  std::vector<float> short_input(1, 1), input(8, 2), out(8, 0);
  Status s = loaded.instance->Run(Bytes(short_input), MutableBytes(out));
  ASSERT_EQ(s.code(), StatusCode::kKernelError) << s;
  for (const char* fragment : {"kernel 'fail_on_short_input'", "stage 2 of 2", "error 5",
                               "input shorter than 8 bytes", "test_kernels_host"}) {
    EXPECT_NE(s.message().find(fragment), std::string::npos) << fragment << " in " << s;
  }
  EXPECT_EQ(loaded.instance->state(), InstanceState::kResident);
  EXPECT_EQ(loaded.instance->stats().failed_runs, 1u);
  KCHAIN_ASSERT_OK(loaded.instance->Run(Bytes(input), MutableBytes(out)));
  EXPECT_EQ(out, input);
}

TEST(Instance, LongErrorMessagesAreTruncatedAndZeroCodesBecomeOne) {
  auto device = HostDevice();
  auto lib = Library::Open(kLib, DeviceKind::kHost);
  ASSERT_TRUE(lib.ok());
  for (const char* kernel : {"report_long_error", "report_zero_code", "report_error"}) {
    auto fn = Function::Create(device, *lib, FloatSpec({kernel}, 4), {});
    ASSERT_TRUE(fn.ok()) << fn.status();
    auto inst = Instance::Create(*fn);
    ASSERT_TRUE(inst.ok());
    std::vector<float> in(4), out(4);
    Status s = (*inst)->Run(Bytes(in), MutableBytes(out));
    ASSERT_EQ(s.code(), StatusCode::kKernelError) << kernel;
    if (std::string(kernel) == "report_long_error") {
      EXPECT_NE(s.message().find(std::string(KCHAIN_ERROR_MESSAGE_SIZE - 1, 'x')),
                std::string::npos);
      EXPECT_EQ(s.message().find(std::string(KCHAIN_ERROR_MESSAGE_SIZE, 'x')), std::string::npos);
    } else if (std::string(kernel) == "report_zero_code") {
      EXPECT_NE(s.message().find("reported error 1"), std::string::npos) << s;
    } else {
      EXPECT_NE(s.message().find("error 42: test: the input was not"), std::string::npos) << s;
    }
  }
}

TEST(Instance, InputAndOutputSizesAreChecked) {
  auto device = HostDevice();
  auto loaded = Load(device, kLib, FloatSpec({"copy_input_to_out"}, 8));
  ASSERT_TRUE(loaded.instance);
  std::vector<float> too_big(9), out(8), small_out(7), ok_in(8);
  Status s = loaded.instance->Run(Bytes(too_big), MutableBytes(out));
  EXPECT_EQ(s.code(), StatusCode::kPayloadTooLarge) << s;
  EXPECT_NE(s.message().find("36 bytes"), std::string::npos) << s;
  s = loaded.instance->Run(Bytes(ok_in), MutableBytes(small_out));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(loaded.instance->RunStaged(33).code(), StatusCode::kPayloadTooLarge);
  EXPECT_EQ(loaded.instance->stats().runs, 0u);
}

TEST(Instance, RunStagedUsesTheStagingBuffersWithoutCopies) {
  auto device = HostDevice();
  auto loaded = Load(device, kLib, FloatSpec({"copy_input_to_out"}, 4));
  ASSERT_TRUE(loaded.instance);
  Instance& inst = *loaded.instance;
  const float values[3] = {1.5f, -2.5f, 8.0f};
  std::memcpy(inst.input_staging().data(), values, sizeof values);
  KCHAIN_ASSERT_OK(inst.RunStaged(sizeof values));
  float out[4];
  ASSERT_EQ(inst.output_staging().size(), sizeof out);
  std::memcpy(out, inst.output_staging().data(), sizeof out);
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(out[2], 8.0f);
  EXPECT_EQ(out[3], 0.0f);  // the kernel zero-fills past the input
}

TEST(Instance, ExternalStagingBuffersAreUsedInPlace) {
  auto device = HostDevice();
  std::vector<std::byte> in(64), out(64);
  InstanceOptions options;
  options.external_input_staging = in;
  options.external_output_staging = out;
  auto loaded = Load(device, kLib, FloatSpec({"copy_input_to_out"}, 16), {}, options);
  ASSERT_TRUE(loaded.instance);
  EXPECT_EQ(loaded.instance->input_staging().data(), in.data());
  EXPECT_EQ(loaded.instance->output_staging().data(), out.data());
  const float value = 42.5f;
  std::memcpy(in.data(), &value, 4);
  KCHAIN_ASSERT_OK(loaded.instance->RunStaged(4));
  float got = 0;
  std::memcpy(&got, out.data(), 4);
  EXPECT_EQ(got, value);
  // Too small for the function.
  std::vector<std::byte> tiny(8);
  options.external_input_staging = tiny;
  auto instance = Instance::Create(loaded.function, options);
  EXPECT_EQ(instance.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(instance.status().message().find("smaller than"), std::string::npos);
}

TEST(Instance, StageProgressNamesTheLauncherRunning) {
  auto device = HostDevice();
  std::atomic<uint32_t> progress{99};
  InstanceOptions options;
  options.stage_progress = &progress;
  auto loaded = Load(device, kLib, FloatSpec({"noop", "fail_on_short_input", "noop"}, 4), {},
                     options);
  ASSERT_TRUE(loaded.instance);
  std::vector<float> good(4, 1), out(4), bad(1);
  KCHAIN_ASSERT_OK(loaded.instance->Run(Bytes(good), MutableBytes(out)));
  EXPECT_EQ(progress.load(), 0u);  // cleared after the chain
  EXPECT_FALSE(loaded.instance->Run(Bytes(bad), MutableBytes(out)).ok());
  EXPECT_EQ(progress.load(), 2u);  // stage 2 was running when it failed
}

TEST(Device, HostMemoryRegistrationIsANoOpOnTheHost) {
  auto device = HostDevice();
  std::vector<std::byte> buffer(4096);
  auto registration = device->RegisterHostMemory(buffer.data(), buffer.size());
  EXPECT_TRUE(registration.ok()) << registration.status();
  EXPECT_EQ(device->RegisterHostMemory(nullptr, 10).status().code(), StatusCode::kInvalidArgument);
}

TEST(Instance, HostBackendRunsDirectAndSaysWhy) {
  auto device = HostDevice();
  auto loaded = Load(device, kLib, FloatSpec({"noop"}, 4));
  ASSERT_TRUE(loaded.instance);
  std::vector<float> in(4), out(4);
  for (int i = 0; i < 3; ++i) KCHAIN_ASSERT_OK(loaded.instance->Run(Bytes(in), MutableBytes(out)));
  EXPECT_EQ(loaded.instance->exec_mode(), ExecMode::kDirect);
  EXPECT_NE(loaded.instance->graph_status().find("unsupported"), std::string::npos);
  EXPECT_EQ(loaded.instance->stats().graph_runs, 0u);
}

TEST(Instance, StageTimingIsSampledOrOff) {
  auto device = HostDevice();
  std::vector<float> in(4), out(4);
  RunTimings t;
  for (uint32_t period : {0u, 1u, 3u}) {
    InstanceOptions options;
    options.stage_timing_period = period;
    auto loaded = Load(device, kLib, FloatSpec({"noop"}, 4), {}, options);
    ASSERT_TRUE(loaded.instance);
    std::vector<bool> timed;
    for (int i = 0; i < 7; ++i) {
      KCHAIN_ASSERT_OK(loaded.instance->Run(Bytes(in), MutableBytes(out), &t));
      timed.push_back(t.stages_timed);
      EXPECT_GT(t.total_us, 0);
      if (!t.stages_timed) {
        EXPECT_EQ(t.chain_us, 0);
      }
    }
    const std::vector<bool> expected =
        period == 0   ? std::vector<bool>(7, false)
        : period == 1 ? std::vector<bool>(7, true)
                      : std::vector<bool>{true, false, false, true, false, false, true};
    EXPECT_EQ(timed, expected) << "period " << period;
    EXPECT_EQ(loaded.instance->stats().timed_runs,
              static_cast<uint64_t>(std::count(expected.begin(), expected.end(), true)));
  }
}

TEST(Function, RejectsWhatCannotRun) {
  auto device = HostDevice();
  auto lib = Library::Open(kLib, DeviceKind::kHost);
  ASSERT_TRUE(lib.ok());
  // Constants of the wrong size.
  std::vector<float> three(3);
  auto fn = Function::Create(device, *lib, FloatSpec({"noop"}, 4, 4), Bytes(three));
  ASSERT_EQ(fn.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(fn.status().message().find("constants are 12 bytes"), std::string::npos);
  // A kernel the library does not export: named, with its stage.
  fn = Function::Create(device, *lib, FloatSpec({"noop", "missing_kernel"}, 4), {});
  ASSERT_EQ(fn.status().code(), StatusCode::kNotFound);
  EXPECT_NE(fn.status().message().find("chain[1]: kernel 'missing_kernel'"), std::string::npos)
      << fn.status();
  // A spec that does not validate.
  fn = Function::Create(device, *lib, FloatSpec({}, 4), {});
  EXPECT_EQ(fn.status().code(), StatusCode::kInvalidArgument);
  // No device or library.
  EXPECT_EQ(Function::Create(nullptr, *lib, FloatSpec({"noop"}, 4), {}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Instance::Create(nullptr).status().code(), StatusCode::kInvalidArgument);
}

TEST(Function, OneLibraryServesManyFunctionsAndInstances) {
  auto device = HostDevice();
  auto lib = Library::Open(kLib, DeviceKind::kHost);
  ASSERT_TRUE(lib.ok());
  std::vector<std::unique_ptr<Instance>> instances;
  for (int f = 0; f < 3; ++f) {
    std::vector<float> constants(4, static_cast<float>(f));
    auto fn = Function::Create(device, *lib, FloatSpec({"add_constant", "double_tmp_to_out"}, 4, 4),
                               Bytes(constants));
    ASSERT_TRUE(fn.ok());
    for (int i = 0; i < 2; ++i) {
      auto inst = Instance::Create(*fn);
      ASSERT_TRUE(inst.ok());
      instances.push_back(std::move(*inst));
    }
  }
  // The test's handle plus three functions share the one loaded library.
  EXPECT_EQ(lib->use_count(), 4);
  std::vector<float> in(4, 1), out(4);
  for (size_t i = 0; i < instances.size(); ++i) {
    KCHAIN_ASSERT_OK(instances[i]->Run(Bytes(in), MutableBytes(out)));
    EXPECT_EQ(out[0], 2 * (1 + static_cast<float>(i / 2)));
  }
}

TEST(Device, HostDeviceDescribesItself) {
  auto device = HostDevice();
  EXPECT_EQ(device->kind(), DeviceKind::kHost);
  EXPECT_FALSE(device->broken());
  EXPECT_TRUE(device->broken_reason().empty());
  EXPECT_EQ(device->limits().max_threads_per_block, 1024);
  EXPECT_GT(device->limits().total_memory_bytes, 0u);
  EXPECT_EQ(Device::Open(DeviceKind::kHost, 1).status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(ParseDeviceKind("tpu").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(DeviceKindName(*ParseDeviceKind("cuda")), "cuda");
}

TEST(Device, CudaWithoutGpuIsUnavailableNotFatal) {
  if (Device::CudaDeviceCount() > 0) GTEST_SKIP() << "a GPU is visible; covered by the gpu tests";
  auto device = Device::Open(DeviceKind::kCuda);
  ASSERT_FALSE(device.ok());
  EXPECT_EQ(device.status().code(), StatusCode::kUnavailable) << device.status();
  auto fallback = Device::OpenAuto();
  ASSERT_TRUE(fallback.ok());
  EXPECT_EQ((*fallback)->kind(), DeviceKind::kHost);
}

}  // namespace
}  // namespace kchain
