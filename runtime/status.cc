#include "kchain/status.h"

#include <array>
#include <utility>

namespace kchain {
namespace {

constexpr std::array<std::pair<StatusCode, std::string_view>, 16> kCodeNames = {{
    {StatusCode::kOk, "ok"},
    {StatusCode::kInvalidArgument, "invalid_argument"},
    {StatusCode::kNotFound, "not_found"},
    {StatusCode::kAlreadyExists, "already_exists"},
    {StatusCode::kFailedPrecondition, "failed_precondition"},
    {StatusCode::kPayloadTooLarge, "payload_too_large"},
    {StatusCode::kResourceExhausted, "resource_exhausted"},
    {StatusCode::kDeadlineExceeded, "deadline_exceeded"},
    {StatusCode::kUnavailable, "unavailable"},
    {StatusCode::kUnauthenticated, "unauthenticated"},
    {StatusCode::kKernelError, "kernel_error"},
    {StatusCode::kUnimplemented, "unimplemented"},
    {StatusCode::kMethodNotAllowed, "method_not_allowed"},
    {StatusCode::kLengthRequired, "length_required"},
    {StatusCode::kInsufficientStorage, "insufficient_storage"},
    {StatusCode::kInternal, "internal"},
}};

}  // namespace

std::string_view StatusCodeName(StatusCode code) {
  for (const auto& [c, name] : kCodeNames) {
    if (c == code) return name;
  }
  return "internal";
}

std::optional<StatusCode> StatusCodeFromName(std::string_view name) {
  for (const auto& [c, n] : kCodeNames) {
    if (n == name) return c;
  }
  return std::nullopt;
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string out(StatusCodeName(code_));
  out += ": ";
  out += message_;
  return out;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  std::string message(context);
  message += ": ";
  message += message_;
  return Status(code_, std::move(message));
}

std::ostream& operator<<(std::ostream& os, const Status& status) { return os << status.ToString(); }

}  // namespace kchain
