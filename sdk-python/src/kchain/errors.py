"""The exceptions kchain raises.

Every error is a :class:`KchainError`. Errors the gateway (or, for local runs, the runtime)
reports are :class:`ApiError` subclasses, one per error code, the same codes the gateway puts
in its ``{"error": {"code": ..., "message": ...}}`` bodies::

    KchainError
    ├── TransportError              the gateway could not be reached, or the connection broke
    └── ApiError                    the gateway or the runtime refused or failed the request
        ├── InvalidArgumentError        400  invalid_argument
        ├── UnauthenticatedError        401  unauthenticated
        ├── NotFoundError               404  not_found
        ├── MethodNotAllowedError       405  method_not_allowed
        ├── AlreadyExistsError          409  already_exists
        ├── FailedPreconditionError     409  failed_precondition
        ├── LengthRequiredError         411  length_required
        ├── PayloadTooLargeError        413  payload_too_large
        ├── ResourceExhaustedError      429  resource_exhausted
        ├── InternalError               500  internal
        ├── UnimplementedError          501  unimplemented
        ├── KernelError                 502  kernel_error
        ├── UnavailableError            503  unavailable
        ├── DeadlineExceededError       504  deadline_exceeded
        └── InsufficientStorageError    507  insufficient_storage

``ApiError.code`` is the code, ``ApiError.status`` the HTTP status (``None`` for local runs),
and ``str(error)`` the server's message.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

__all__ = [
    "KchainError",
    "TransportError",
    "ApiError",
    "InvalidArgumentError",
    "UnauthenticatedError",
    "NotFoundError",
    "MethodNotAllowedError",
    "AlreadyExistsError",
    "FailedPreconditionError",
    "LengthRequiredError",
    "PayloadTooLargeError",
    "ResourceExhaustedError",
    "InternalError",
    "UnimplementedError",
    "KernelError",
    "UnavailableError",
    "DeadlineExceededError",
    "InsufficientStorageError",
    "error_from_code",
]


class KchainError(Exception):
    """Base class of every kchain error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TransportError(KchainError):
    """The gateway could not be reached, or the connection failed mid-request."""


class ApiError(KchainError):
    """An error reported by the gateway (or by the runtime, for local runs)."""

    code: str = "unknown"
    http_status: Optional[int] = None

    def __init__(self, message: str, *, code: Optional[str] = None,
                 status: Optional[int] = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, message={self.message!r})"


class InvalidArgumentError(ApiError):
    """The request is malformed or inconsistent (bad manifest, wrong input size, ...)."""
    code, http_status = "invalid_argument", 400


class UnauthenticatedError(ApiError):
    """No API key, or one the gateway does not know."""
    code, http_status = "unauthenticated", 401


class NotFoundError(ApiError):
    """No such function (or not one this caller's tenant can see)."""
    code, http_status = "not_found", 404


class MethodNotAllowedError(ApiError):
    """The route does not take this HTTP method."""
    code, http_status = "method_not_allowed", 405


class AlreadyExistsError(ApiError):
    """A conflicting operation (a deploy or delete of the same function) is in progress."""
    code, http_status = "already_exists", 409


class FailedPreconditionError(ApiError):
    """The target is not in a state where the operation can proceed."""
    code, http_status = "failed_precondition", 409


class LengthRequiredError(ApiError):
    """A request that needs a body did not declare its length."""
    code, http_status = "length_required", 411


class PayloadTooLargeError(ApiError):
    """The input, or the whole request, is larger than allowed."""
    code, http_status = "payload_too_large", 413


class ResourceExhaustedError(ApiError):
    """A queue or the memory budget is full; retry later."""
    code, http_status = "resource_exhausted", 429


class InternalError(ApiError):
    """A fault inside kchain itself."""
    code, http_status = "internal", 500


class UnimplementedError(ApiError):
    """The operation is not supported by this server."""
    code, http_status = "unimplemented", 501


class KernelError(ApiError):
    """The function's own kernel failed: it reported an error, faulted the device, or
    crashed its worker. kchain itself is fine; the message names the kernel."""
    code, http_status = "kernel_error", 502


class UnavailableError(ApiError):
    """The server cannot serve now (shutting down, device broken, function failed to load)."""
    code, http_status = "unavailable", 503


class DeadlineExceededError(ApiError):
    """The invocation did not finish within the server's invocation timeout."""
    code, http_status = "deadline_exceeded", 504


class InsufficientStorageError(ApiError):
    """The server's disk is full: nothing can be stored (deploys, uploads) until an operator
    frees space. Not worth retrying soon; invocations of deployed functions still work."""
    code, http_status = "insufficient_storage", 507


_BY_CODE: Dict[str, Type[ApiError]] = {
    cls.code: cls
    for cls in (InvalidArgumentError, UnauthenticatedError, NotFoundError, MethodNotAllowedError,
                AlreadyExistsError, FailedPreconditionError, LengthRequiredError,
                PayloadTooLargeError, ResourceExhaustedError, InternalError, UnimplementedError,
                KernelError, UnavailableError, DeadlineExceededError, InsufficientStorageError)
}


def error_from_code(code: str, message: str, status: Optional[int] = None) -> ApiError:
    """The exception for an error code (an :class:`ApiError` for an unknown one)."""
    cls = _BY_CODE.get(code, ApiError)
    return cls(message, code=code, status=status)
