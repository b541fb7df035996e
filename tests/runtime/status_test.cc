#include "kchain/status.h"

#include <gtest/gtest.h>

namespace kchain {
namespace {

TEST(Status, DefaultIsOkAndEmpty) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kOk);
  EXPECT_EQ(s.ToString(), "ok");
}

TEST(Status, CarriesCodeAndMessage) {
  Status s = NotFoundError("no such thing");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.ToString(), "not_found: no such thing");
  EXPECT_EQ(s.WithContext("loading x").message(), "loading x: no such thing");
  EXPECT_EQ(s.WithContext("loading x").code(), StatusCode::kNotFound);
  EXPECT_TRUE(Status().WithContext("ignored").ok());
}

TEST(Status, EveryCodeNameRoundTrips) {
  for (int c = 0; c <= static_cast<int>(StatusCode::kInternal); ++c) {
    const auto code = static_cast<StatusCode>(c);
    const auto name = StatusCodeName(code);
    EXPECT_FALSE(name.empty());
    ASSERT_TRUE(StatusCodeFromName(name).has_value()) << name;
    EXPECT_EQ(*StatusCodeFromName(name), code) << name;
  }
  EXPECT_FALSE(StatusCodeFromName("no_such_code").has_value());
}

TEST(StatusOr, HoldsValueOrError) {
  StatusOr<int> v = 7;
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 7);
  StatusOr<int> e = InvalidArgumentError("bad");
  EXPECT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument);
}

TEST(StatusOr, ValueOfAnErrorThrowsTheErrorItIgnored) {
  StatusOr<int> e = NotFoundError("no function 'x'");
  try {
    (void)e.value();
    FAIL() << "value() of an error returned";
  } catch (const BadStatusOrAccess& bad) {
    EXPECT_EQ(bad.status().code(), StatusCode::kNotFound);
    EXPECT_NE(std::string(bad.what()).find("not_found: no function 'x'"), std::string::npos)
        << bad.what();
  }
  EXPECT_THROW((void)std::move(e).value(), BadStatusOrAccess);
}

TEST(StatusOr, OkStatusWithoutValueBecomesInternal) {
  StatusOr<int> v = Status();
  EXPECT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kInternal);
}

StatusOr<int> Half(int x) {
  if (x % 2 != 0) return InvalidArgumentError("odd");
  return x / 2;
}

StatusOr<int> Quarter(int x) {
  KCHAIN_ASSIGN_OR_RETURN(int h, Half(x));
  KCHAIN_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

TEST(StatusOr, AssignOrReturnPropagates) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().message(), "odd");
}

}  // namespace
}  // namespace kchain
