// The one place where kchain status codes become HTTP statuses, and the error body.
#ifndef KCHAIN_GATEWAY_HTTP_HTTP_ERRORS_H_
#define KCHAIN_GATEWAY_HTTP_HTTP_ERRORS_H_

#include <string>

#include "kchain/status.h"

namespace kchain::gateway {

// invalid_argument 400, unauthenticated 401, not_found 404, method_not_allowed 405,
// already_exists and failed_precondition 409, length_required 411, payload_too_large 413,
// resource_exhausted 429, internal 500,
// unimplemented 501, kernel_error 502 (the function's own code failed; kchain is fine),
// unavailable 503, deadline_exceeded 504, insufficient_storage 507 (the disk is full: a
// permanent condition for the client, not a "retry in a second" 429).
int HttpStatusFor(StatusCode code);

// {"error": {"code": "<name>", "message": "<message>"}}
std::string ErrorBody(const Status& status);

// The KServe v2 / Open Inference Protocol's error body, {"error": "<message>"}, for /v2
// routes. The HTTP status is HttpStatusFor()'s as everywhere else.
std::string V2ErrorBody(const Status& status);

}  // namespace kchain::gateway

#endif  // KCHAIN_GATEWAY_HTTP_HTTP_ERRORS_H_
