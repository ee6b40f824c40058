"""Typed errors, each mapped to OpenAI's error body in one handler at the HTTP edge.

Engine code raises these; it never builds HTTP responses.  ``code`` is also what a
``response.failed`` event carries when the same error happens after a stream started.
"""

from __future__ import annotations

from typing import Any


class ParleyError(Exception):
    """Base error: an HTTP status plus OpenAI's ``{message, type, param, code}``."""

    status_code = 500
    error_type = "server_error"
    default_code: str | None = "server_error"
    # ``Response.error.code`` is a closed enum in the protocol; Parley's finer code travels in
    # the stream's ``error`` event and in HTTP error bodies.
    response_error_code = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code

    def header_pairs(self) -> list[tuple[bytes, bytes]]:
        """HTTP headers this error's response carries besides the body (``Retry-After``)."""
        return []

    def body(self) -> dict[str, Any]:
        """The JSON body OpenAI sends for this error."""
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}}


class InvalidRequest(ParleyError):
    """400: the request is malformed or refers to something it may not."""

    status_code = 400
    error_type = "invalid_request_error"
    default_code = "invalid_value"
    response_error_code = "invalid_prompt"


class UnknownParameter(InvalidRequest):
    def __init__(self, name: str) -> None:
        super().__init__(f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")


class UnsupportedParameter(InvalidRequest):
    def __init__(self, name: str, why: str = "Parley does not support it yet.") -> None:
        super().__init__(f"Unsupported parameter: '{name}'. {why}", param=name, code="unsupported_parameter")


class NotFound(ParleyError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = None


class AuthenticationFailed(ParleyError):
    status_code = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


class PermissionDenied(ParleyError):
    status_code = 403
    error_type = "invalid_request_error"
    default_code = "permission_denied"


class RetryLater(ParleyError):
    """An error the client may retry after ``retry_after_s`` seconds (sent as ``Retry-After``)."""

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def header_pairs(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", str(self.retry_after_s).encode())]


class TooManyFailures(RetryLater):
    """A client address sent too many wrong API keys."""

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "too_many_failed_keys"


class PayloadTooLarge(InvalidRequest):
    status_code = 413


class BackendError(ParleyError):
    """The model backend failed; after the stream started this becomes ``response.failed``."""

    status_code = 502
    error_type = "server_error"
    default_code = "server_error"


class BackendRateLimited(BackendError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"
    response_error_code = "rate_limit_exceeded"


class BackendRejected(InvalidRequest):
    """The backend answered 400 to the request Parley built from the client's: the client's fault."""


class StoreUnavailable(ParleyError):
    """The database could not be written."""

    status_code = 503
    error_type = "server_error"
    default_code = "store_unavailable"


class StoreTimeout(StoreUnavailable):
    """The database answered, but a statement ran past the store timeout and was cancelled (a search of a large
    store on a cold cache, a lock another statement held): this request's 504.  The database is there, so the
    instance stays ready; callers that retry an unavailable store's write retry this one the same way."""

    status_code = 504
    default_code = "store_timeout"


class ServerBusy(RetryLater):
    """A bound on work in flight is reached."""

    status_code = 503
    error_type = "server_error"
    default_code = "server_busy"
