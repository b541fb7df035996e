// The /v1 codec (gateway/http/v1_protocol.h) on its own, without a server.
#include "gateway/http/v1_protocol.h"

#include <gtest/gtest.h>

namespace kchain::gateway::v1 {
namespace {

using nlohmann::json;

FunctionSpec ShapedFloats(std::vector<int64_t> shape, size_t bytes) {
  FunctionSpec spec;
  spec.max_input_bytes = bytes;
  spec.input = {ElementType::kFloat32, std::move(shape)};
  return spec;
}

TEST(V1Protocol, AnInputMustFitItsFunction) {
  const FunctionSpec image = ShapedFloats({28, 28}, 3136);
  EXPECT_TRUE(CheckInputSize(3136, image, "cnn").ok());
  const Status big = CheckInputSize(3140, image, "cnn");
  EXPECT_EQ(big.code(), StatusCode::kPayloadTooLarge);
  EXPECT_EQ(big.message(), "input is 3140 bytes; 'cnn' accepts at most 3136");
  const Status short_one = CheckInputSize(3132, image, "cnn");
  EXPECT_EQ(short_one.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(short_one.message(),
            "input is 3132 bytes; 'cnn' takes exactly 3136 (float32 [28, 28])");
  // Without a shape, shorter inputs are fine, but only whole elements.
  const FunctionSpec vector = ShapedFloats({}, 4000);
  EXPECT_TRUE(CheckInputSize(400, vector, "v").ok());
  EXPECT_TRUE(CheckInputSize(0, vector, "v").ok());
  EXPECT_EQ(CheckInputSize(6, vector, "v").code(), StatusCode::kInvalidArgument);
}

TEST(V1Protocol, AJsonInvokeBodyHasExactlyOneInput) {
  bool base64 = false;
  EXPECT_TRUE(CheckInvokeBody(json{{"input", {1, 2}}}, &base64).ok());
  EXPECT_FALSE(base64);
  EXPECT_TRUE(
      CheckInvokeBody(json{{"input_base64", "AAAA"}, {"output_format", "base64"}}, &base64).ok());
  EXPECT_TRUE(base64);
  for (const json& bad :
       {json::array(), json{{"input", {1}}, {"input_base64", "AA"}}, json::object(),
        json{{"input_base64", 5}}, json{{"input", {1}}, {"output_format", "xml"}},
        json{{"input", {1}}, {"inputs", {1}}}}) {
    bool unused = false;
    const Status status = CheckInvokeBody(bad, &unused);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << bad.dump();
  }
  bool unused = false;
  EXPECT_EQ(CheckInvokeBody(json{{"input", {1}}, {"inputs", {1}}}, &unused).message(),
            "unknown key 'inputs' (expected input, input_base64, output_format)");
}

TEST(V1Protocol, TimingsCarryTheStartOnlyWhenThereWasOne) {
  InvokeTimings t;
  t.queue = 1;
  t.total = 9;
  t.run.total_us = 5;
  t.start.create_us = 300;
  const json hot = TimingsJson(t, StartType::kHot);
  EXPECT_EQ(hot, (json{{"queue", 1.0}, {"run", 5.0}, {"total", 9.0}}));
  const json cold = TimingsJson(t, StartType::kCold);
  EXPECT_EQ(cold["start"]["create"], 300.0);
  EXPECT_FALSE(cold.contains("chain"));
  t.run.stages_timed = true;
  t.run.chain_us = 3;
  EXPECT_EQ(TimingsJson(t, StartType::kHot)["chain"], 3.0);
}

}  // namespace
}  // namespace kchain::gateway::v1
