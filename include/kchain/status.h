// Status and StatusOr: how every fallible kchain call reports failure.
//
// One set of canonical codes is used everywhere: by the runtime, by the gateway's HTTP
// error bodies (`{"error": {"code": "<name>", ...}}`) and by the Python SDK's exception
// classes. StatusCodeName() gives the wire name of each code; the HTTP mapping lives in
// one place in the gateway.
//
// Thread-safety: Status and StatusOr are values; distinct objects may be used from distinct
// threads, one object needs external synchronization for concurrent mutation.
#ifndef KCHAIN_STATUS_H_
#define KCHAIN_STATUS_H_

#include <exception>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace kchain {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument,      // the caller's input is malformed or inconsistent
  kNotFound,             // a named thing (file, symbol, function) does not exist
  kAlreadyExists,        // creating something that exists
  kFailedPrecondition,   // the system is not in a state where the call can proceed
  kPayloadTooLarge,      // an input exceeds a declared or configured size
  kResourceExhausted,    // a queue, pool or memory budget is full; retry later
  kDeadlineExceeded,     // the call did not finish in time
  kUnavailable,          // the device or server cannot serve now (broken, shutting down)
  kUnauthenticated,      // missing or invalid credentials
  kKernelError,          // a user kernel failed (reported an error or faulted on the device)
  kUnimplemented,        // the operation is not supported here
  kMethodNotAllowed,     // an HTTP method a route does not take
  kLengthRequired,       // an HTTP request that needs a body declared no length
  kInsufficientStorage,  // the disk is full: nothing can be stored until space is freed
  kInternal,             // a genuine kchain fault (keep last: codes are counted up to it)
};

// The stable wire name of a code, e.g. "invalid_argument". Never fails.
std::string_view StatusCodeName(StatusCode code);

// Inverse of StatusCodeName. Returns std::nullopt for unknown names.
std::optional<StatusCode> StatusCodeFromName(std::string_view name);

class [[nodiscard]] Status {
 public:
  // An OK status. Allocates nothing.
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "invalid_argument: <message>", or "ok".
  std::string ToString() const;

  // Returns a status with the same code and `context + ": " + message`.
  Status WithContext(std::string_view context) const;

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

std::ostream& operator<<(std::ostream& os, const Status& status);

inline Status InvalidArgumentError(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status NotFoundError(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status AlreadyExistsError(std::string m) {
  return {StatusCode::kAlreadyExists, std::move(m)};
}
inline Status FailedPreconditionError(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
inline Status PayloadTooLargeError(std::string m) {
  return {StatusCode::kPayloadTooLarge, std::move(m)};
}
inline Status ResourceExhaustedError(std::string m) {
  return {StatusCode::kResourceExhausted, std::move(m)};
}
inline Status DeadlineExceededError(std::string m) {
  return {StatusCode::kDeadlineExceeded, std::move(m)};
}
inline Status UnavailableError(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status UnauthenticatedError(std::string m) {
  return {StatusCode::kUnauthenticated, std::move(m)};
}
inline Status KernelError(std::string m) { return {StatusCode::kKernelError, std::move(m)}; }
inline Status UnimplementedError(std::string m) {
  return {StatusCode::kUnimplemented, std::move(m)};
}
inline Status MethodNotAllowedError(std::string m) {
  return {StatusCode::kMethodNotAllowed, std::move(m)};
}
inline Status LengthRequiredError(std::string m) {
  return {StatusCode::kLengthRequired, std::move(m)};
}
inline Status InsufficientStorageError(std::string m) {
  return {StatusCode::kInsufficientStorage, std::move(m)};
}
inline Status InternalError(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// Thrown by StatusOr::value() when it holds an error: the caller broke the precondition, and
// the exception says which error it ignored (never a bare std::bad_variant_access).
class BadStatusOrAccess : public std::exception {
 public:
  explicit BadStatusOrAccess(Status status)
      : status_(std::move(status)),
        what_("StatusOr::value() on an error: " + std::string(StatusCodeName(status_.code())) +
              ": " + status_.message()) {}
  const Status& status() const { return status_; }
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  Status status_;
  std::string what_;
};

// Either a value or a non-OK status.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  // Constructing from an OK status is a programming error; it is turned into kInternal so
  // that no caller ever sees an "OK without value".
  StatusOr(Status status)  // NOLINT(google-explicit-constructor)
      : rep_(status.ok() ? InternalError("StatusOr constructed from an OK status")
                         : std::move(status)) {}
  StatusOr(T value) : rep_(std::move(value)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(rep_); }

  // The status: OK when a value is held.
  Status status() const { return ok() ? Status() : std::get<Status>(rep_); }

  // Precondition: ok(). Otherwise BadStatusOrAccess, naming the error.
  T& value() & {
    CheckOk();
    return *std::get_if<T>(&rep_);
  }
  const T& value() const& {
    CheckOk();
    return *std::get_if<T>(&rep_);
  }
  T&& value() && {
    CheckOk();
    return std::move(*std::get_if<T>(&rep_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  void CheckOk() const {
    if (!ok()) throw BadStatusOrAccess(*std::get_if<Status>(&rep_));
  }

  std::variant<Status, T> rep_;
};

}  // namespace kchain

// Returns early from the enclosing function when `expr` is not OK.
#define KCHAIN_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::kchain::Status kchain_status_ = (expr);        \
    if (!kchain_status_.ok()) return kchain_status_; \
  } while (false)

#define KCHAIN_STATUS_CONCAT_INNER_(a, b) a##b
#define KCHAIN_STATUS_CONCAT_(a, b) KCHAIN_STATUS_CONCAT_INNER_(a, b)

// `KCHAIN_ASSIGN_OR_RETURN(auto x, MakeX());` declares x from the value or returns the status.
#define KCHAIN_ASSIGN_OR_RETURN(lhs, expr) \
  KCHAIN_ASSIGN_OR_RETURN_IMPL_(KCHAIN_STATUS_CONCAT_(kchain_statusor_, __LINE__), lhs, expr)
#define KCHAIN_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()

#endif  // KCHAIN_STATUS_H_
