// JSON typed arrays and base64 at the edge.
#include "gateway/http/tensor_codec.h"

#include <gtest/gtest.h>

#include <cstring>
#include <limits>

namespace kchain::gateway {
namespace {

using nlohmann::json;

template <typename T>
std::vector<T> As(const std::vector<std::byte>& bytes) {
  std::vector<T> out(bytes.size() / sizeof(T));
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

TEST(TensorCodec, DecodesEveryTypeAndRoundTrips) {
  const struct {
    ElementType type;
    json values;
  } cases[] = {
      {ElementType::kFloat32, {1.5, -2, 3.25e10}},
      {ElementType::kFloat64, {1e300, -0.0, 7}},
      {ElementType::kInt8, {-128, 0, 127}},
      {ElementType::kInt16, {-32768, 5, 32767}},
      {ElementType::kInt32, {std::numeric_limits<int32_t>::min(), 3.0, 2147483647}},
      {ElementType::kInt64,
       {std::numeric_limits<int64_t>::min(), 0, std::numeric_limits<int64_t>::max()}},
      {ElementType::kUint8, {0, 128, 255}},
      {ElementType::kUint16, {0, 1, 65535}},
      {ElementType::kUint32, {0, 1, 4294967295u}},
      {ElementType::kUint64, {0, 1, std::numeric_limits<uint64_t>::max()}},
      {ElementType::kBool, {true, false, 1}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(ElementTypeName(c.type));
    std::vector<std::byte> bytes;
    Status s = DecodeJsonTensor(c.values, TensorSpec{c.type, {3}}, 1 << 20, "input", &bytes);
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_EQ(bytes.size(), 3 * ElementSize(c.type));
    const json back = EncodeJsonTensor(bytes, c.type);
    ASSERT_EQ(back.size(), 3u);
    if (c.type == ElementType::kBool) {
      EXPECT_EQ(back, json({true, false, true}));
    } else if (c.type == ElementType::kFloat32) {
      EXPECT_EQ(back[0].get<float>(), 1.5f);
      EXPECT_EQ(back[2].get<float>(), 3.25e10f);
    } else {
      EXPECT_EQ(back[0], c.values[0]);
      EXPECT_EQ(back[2], c.values[2]);
    }
  }
}

TEST(TensorCodec, ShapelessInputMayBeShorterButNotLonger) {
  std::vector<std::byte> bytes;
  EXPECT_TRUE(
      DecodeJsonTensor(json({1, 2}), TensorSpec{ElementType::kInt32, {}}, 16, "x", &bytes).ok());
  EXPECT_EQ(As<int32_t>(bytes), (std::vector<int32_t>{1, 2}));
  bytes.clear();
  Status s =
      DecodeJsonTensor(json({1, 2, 3, 4, 5}), TensorSpec{ElementType::kInt32, {}}, 16, "x", &bytes);
  EXPECT_EQ(s.code(), StatusCode::kPayloadTooLarge) << s;
}

TEST(TensorCodec, RejectsBadElementsByPath) {
  std::vector<std::byte> bytes;
  Status s = DecodeJsonTensor(json::parse("[[1, 2], [3, \"x\"]]"),
                              TensorSpec{ElementType::kFloat32, {2, 2}}, 64, "input", &bytes);
  EXPECT_EQ(s.message(), "input[1][1]: expected a number, got a string");
  s = DecodeJsonTensor(json::parse("[1, [2]]"), TensorSpec{ElementType::kFloat32, {}}, 64, "input",
                       &bytes);
  EXPECT_NE(s.message().find("ragged"), std::string::npos) << s;
  s = DecodeJsonTensor(json::parse("[[1], 2]"), TensorSpec{ElementType::kFloat32, {}}, 64, "input",
                       &bytes);
  EXPECT_NE(s.message().find("ragged"), std::string::npos) << s;
  s = DecodeJsonTensor(json::parse("[true]"), TensorSpec{ElementType::kInt8, {}}, 64, "v", &bytes);
  EXPECT_EQ(s.message(), "v[0]: expected a number, got a boolean");
  s = DecodeJsonTensor(json::parse("[2]"), TensorSpec{ElementType::kBool, {}}, 64, "v", &bytes);
  EXPECT_NE(s.message().find("expected true, false, 0 or 1"), std::string::npos);
  s = DecodeJsonTensor(json::parse("[128]"), TensorSpec{ElementType::kInt8, {}}, 64, "v", &bytes);
  EXPECT_NE(s.message().find("out of range for int8"), std::string::npos);
  // Deep nesting is refused before any recursion.
  std::string deep(100, '[');
  deep += std::string(100, ']');
  s = DecodeJsonTensor(json::parse(deep), TensorSpec{ElementType::kFloat32, {}}, 64, "v", &bytes);
  EXPECT_NE(s.message().find("nested deeper"), std::string::npos) << s;
}

TEST(TensorCodec, NonFiniteOutputsBecomeNull) {
  const float values[3] = {1.0f, std::numeric_limits<float>::quiet_NaN(),
                           std::numeric_limits<float>::infinity()};
  const json out = EncodeJsonTensor(std::as_bytes(std::span(values)), ElementType::kFloat32);
  EXPECT_EQ(out, json::parse("[1.0, null, null]"));
}

TEST(Base64, RoundTripsEveryLength) {
  for (size_t n = 0; n < 40; ++n) {
    std::vector<std::byte> data(n);
    for (size_t i = 0; i < n; ++i) data[i] = static_cast<std::byte>(i * 37 + 11);
    const std::string text = Base64Encode(data);
    EXPECT_EQ(text.size(), (n + 2) / 3 * 4);
    auto back = Base64Decode(text);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, data) << n;
  }
  const char hello[] = "hello";
  EXPECT_EQ(Base64Encode(std::as_bytes(std::span(hello, 5))), "aGVsbG8=");
}

TEST(Base64, RejectsGarbage) {
  EXPECT_FALSE(Base64Decode("a$==").ok());
  EXPECT_FALSE(Base64Decode("aGVsbG8===").ok());
  EXPECT_FALSE(Base64Decode("a").ok());
  EXPECT_TRUE(Base64Decode("aGVsbG8").ok());  // padding is optional
}

}  // namespace
}  // namespace kchain::gateway
