#include "gateway/http/http_errors.h"

#include <nlohmann/json.hpp>

namespace kchain::gateway {

int HttpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInvalidArgument:
      return 400;
    case StatusCode::kUnauthenticated:
      return 401;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kAlreadyExists:
    case StatusCode::kFailedPrecondition:
      return 409;
    case StatusCode::kPayloadTooLarge:
      return 413;
    case StatusCode::kResourceExhausted:
      return 429;
    case StatusCode::kUnimplemented:
      return 501;
    case StatusCode::kMethodNotAllowed:
      return 405;
    case StatusCode::kLengthRequired:
      return 411;
    case StatusCode::kKernelError:
      return 502;
    case StatusCode::kUnavailable:
      return 503;
    case StatusCode::kDeadlineExceeded:
      return 504;
    case StatusCode::kInsufficientStorage:
      return 507;
    case StatusCode::kInternal:
      return 500;
  }
  return 500;
}

std::string ErrorBody(const Status& status) {
  const nlohmann::json body = {
      {"error",
       {{"code", std::string(StatusCodeName(status.code()))}, {"message", status.message()}}}};
  // Replace: a message may quote bytes that are not UTF-8 (a file name, a kernel's message).
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string V2ErrorBody(const Status& status) {
  const nlohmann::json body = {{"error", status.message()}};
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace kchain::gateway
