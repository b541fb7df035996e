// Spec validation: every bad spec is rejected with a message naming the offending field.
#include "kchain/function_spec.h"

#include <gtest/gtest.h>

#include <climits>
#include <functional>

namespace kchain {
namespace {

DeviceLimits Limits() {
  DeviceLimits l;
  l.max_threads_per_block = 1024;
  l.max_grid_size = INT_MAX;
  l.total_memory_bytes = size_t{80} << 30;
  l.max_buffer_bytes = size_t{80} << 30;
  return l;
}

FunctionSpec Good() {
  FunctionSpec s;
  s.chain = {{"conv1", 14, 256}, {"pool", 1, 256}, {"fc", 1, 32}};
  s.max_input_bytes = 3136;
  s.tmp_bytes = 14688;
  s.out_bytes = 40;
  s.constant_bytes = 9372;
  s.input = {ElementType::kFloat32, {28, 28}};
  s.output = {ElementType::kFloat32, {10}};
  return s;
}

TEST(FunctionSpec, GoodSpecValidates) {
  EXPECT_TRUE(ValidateFunctionSpec(Good(), Limits()).ok());
  FunctionSpec flat = Good();
  flat.input.shape.clear();
  flat.output.shape.clear();
  EXPECT_TRUE(ValidateFunctionSpec(flat, Limits()).ok());
}

struct BadCase {
  const char* name;
  std::function<void(FunctionSpec&)> mutate;
  const char* fragment;  // expected in the message
};

class BadSpec : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadSpec, IsRejectedWithClearMessage) {
  FunctionSpec s = Good();
  GetParam().mutate(s);
  Status status = ValidateFunctionSpec(s, Limits());
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find(GetParam().fragment), std::string::npos) << status;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadSpec,
    ::testing::Values(
        BadCase{"empty_chain", [](FunctionSpec& s) { s.chain.clear(); }, "chain is empty"},
        BadCase{"overlong_chain",
                [](FunctionSpec& s) {
                  s.chain.assign(kMaxChainLength + 1, {"k", 1, 1});
                },
                "at most"},
        BadCase{"bad_kernel_name", [](FunctionSpec& s) { s.chain[1].kernel = "po-ol"; },
                "chain[1]: kernel name 'po-ol'"},
        BadCase{"empty_kernel_name", [](FunctionSpec& s) { s.chain[0].kernel = ""; }, "chain[0]"},
        BadCase{"zero_grid", [](FunctionSpec& s) { s.chain[0].grid = 0; },
                "chain[0] (kernel 'conv1'): grid 0"},
        BadCase{"negative_block", [](FunctionSpec& s) { s.chain[2].block = -1; },
                "chain[2] (kernel 'fc'): block -1"},
        BadCase{"block_over_limit", [](FunctionSpec& s) { s.chain[1].block = 2048; },
                "threads per block"},
        BadCase{"zero_input",
                [](FunctionSpec& s) {
                  s.max_input_bytes = 0;
                  s.input.shape.clear();
                },
                "max_input_bytes is 0"},
        BadCase{"zero_output",
                [](FunctionSpec& s) {
                  s.out_bytes = 0;
                  s.output.shape.clear();
                },
                "out_bytes is 0"},
        BadCase{"absurd_tmp", [](FunctionSpec& s) { s.tmp_bytes = size_t{1} << 40; }, "tmp_bytes"},
        BadCase{"absurd_constants", [](FunctionSpec& s) { s.constant_bytes = SIZE_MAX; },
                "constant_bytes"},
        BadCase{"together_too_big",
                [](FunctionSpec& s) {
                  s.tmp_bytes = size_t{50} << 30;
                  s.constant_bytes = size_t{50} << 30;
                },
                "together"},
        BadCase{"output_shape_mismatch", [](FunctionSpec& s) { s.output.shape = {11}; },
                "output: shape holds 11 float32 elements (44 bytes) but the buffer is declared "
                "as 40 bytes"},
        BadCase{"input_shape_mismatch",
                [](FunctionSpec& s) {
                  s.input.shape = {28, 27};
                },
                "input: shape"},
        BadCase{"nonpositive_dim",
                [](FunctionSpec& s) {
                  s.output.shape = {10, 0};
                },
                "output: shape[1] is 0"},
        BadCase{"overflowing_shape",
                [](FunctionSpec& s) {
                  s.output.shape = {INT64_MAX, INT64_MAX};
                },
                "too many"},
        BadCase{"size_not_multiple_of_element",
                [](FunctionSpec& s) {
                  s.output.shape.clear();
                  s.out_bytes = 41;
                },
                "not a whole number of float32"}),
    [](const ::testing::TestParamInfo<BadCase>& info) { return info.param.name; });

TEST(FunctionSpec, ElementTypesRoundTrip) {
  for (const char* name : {"float32", "float64", "int8", "int16", "int32", "int64", "uint8",
                           "uint16", "uint32", "uint64", "bool"}) {
    const auto type = ParseElementType(name);
    ASSERT_TRUE(type.has_value()) << name;
    EXPECT_EQ(ElementTypeName(*type), name);
  }
  EXPECT_FALSE(ParseElementType("float16").has_value());
  EXPECT_EQ(ElementSize(ElementType::kFloat64), 8u);
  EXPECT_EQ(ElementSize(ElementType::kBool), 1u);
}

TEST(FunctionSpec, ChainToString) { EXPECT_EQ(ChainToString(Good()), "conv1 -> pool -> fc"); }

}  // namespace
}  // namespace kchain
