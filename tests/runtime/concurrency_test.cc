// Distinct instances run from distinct threads at once and each gets its own right answer.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

#include "kchain/function.h"
#include "test_util.h"

namespace kchain {
namespace {

using testing::Bytes;
using testing::FloatSpec;
using testing::MutableBytes;

TEST(Concurrency, ManyThreadsRunDistinctInstancesCorrectly) {
  auto device = testing::HostDevice();
  auto lib = Library::Open(testing::TestLibrary("test_kernels_host"), DeviceKind::kHost);
  ASSERT_TRUE(lib.ok());
  constexpr int kThreads = 8, kRuns = 300;
  constexpr size_t kFloats = 512;
  // Two functions with different constants; each thread has its own instance.
  std::vector<std::shared_ptr<const Function>> functions;
  for (int f = 0; f < 2; ++f) {
    std::vector<float> constants(kFloats);
    for (size_t i = 0; i < kFloats; ++i) constants[i] = static_cast<float>(f * 1000 + i);
    auto fn = Function::Create(device, *lib,
                               FloatSpec({"add_constant", "double_tmp_to_out"}, kFloats, kFloats),
                               Bytes(constants));
    ASSERT_TRUE(fn.ok()) << fn.status();
    functions.push_back(*fn);
  }
  std::atomic<int> mismatches{0}, failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const auto& fn = functions[t % 2];
      auto inst = Instance::Create(fn);
      if (!inst.ok()) {
        ++failures;
        return;
      }
      std::mt19937 rng(t);
      std::uniform_real_distribution<float> dist(-100, 100);
      std::vector<float> in(kFloats), out(kFloats);
      for (int r = 0; r < kRuns; ++r) {
        for (auto& v : in) v = dist(rng);
        if (!(*inst)->Run(Bytes(in), MutableBytes(out)).ok()) {
          ++failures;
          return;
        }
        for (size_t i = 0; i < kFloats; ++i) {
          const float expected = 2 * (in[i] + static_cast<float>((t % 2) * 1000 + i));
          if (out[i] != expected) {
            ++mismatches;
            break;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace
}  // namespace kchain
