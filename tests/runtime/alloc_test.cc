// The run path allocates nothing after the first run. Every operator new in this binary and
// every malloc-family call made by kchain's own (statically linked) code is counted while a
// counter is armed (the binary links with --wrap=malloc and friends).
#include <gtest/gtest.h>

#include "alloc_counter.h"
#include "kchain/function.h"
#include "test_util.h"

namespace kchain {
namespace {

using testing::Bytes;
using testing::MutableBytes;

TEST(Allocation, CounterSeesAllocations) {
  // The counter itself works, for both kinds of allocation the runtime makes (operator new,
  // and aligned_alloc in the host backend): otherwise the zero below would prove nothing.
  auto device = testing::HostDevice();
  auto loaded = testing::Load(device, testing::TestLibrary("test_kernels_host"),
                              testing::FloatSpec({"noop"}, 16, 16), std::vector<float>(16));
  ASSERT_TRUE(loaded.instance);
  StatusOr<std::unique_ptr<Instance>> second = UnavailableError("not created");
  const long counted = CountAllocations([&] { second = Instance::Create(loaded.function); });
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_GE(counted, 7);  // the instance object + 2 staging + 4 device buffers (host memory)
  EXPECT_GE(alloc_counter::g_c_allocations.load(), 6);
}

TEST(Allocation, RunPathAllocatesNothingAfterTheFirstRun) {
  auto device = testing::HostDevice();
  std::vector<float> constants(256, 1.0f);
  auto loaded =
      testing::Load(device, testing::TestLibrary("test_kernels_host"),
                    testing::FloatSpec({"add_constant", "double_tmp_to_out"}, 256, 256), constants);
  ASSERT_TRUE(loaded.instance);
  std::vector<float> in(256, 2.0f), out(256);
  RunTimings timings;
  KCHAIN_ASSERT_OK(loaded.instance->Run(Bytes(in), MutableBytes(out), &timings));

  const long counted = CountAllocations([&] {
    for (int i = 0; i < 1000; ++i) {
      (void)loaded.instance->Run(Bytes(in), MutableBytes(out), &timings);
      (void)loaded.instance->RunStaged(in.size() * sizeof(float), &timings);
    }
  });
  EXPECT_EQ(counted, 0);
  EXPECT_EQ(out[0], 6.0f);
  EXPECT_EQ(loaded.instance->stats().runs, 2001u);
}

}  // namespace
}  // namespace kchain
