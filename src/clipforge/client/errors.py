"""Every exception the SDK raises, rooted in one class.

ClipforgeClientError            root; also raised for a missing API key
 ├── APIConnectionError         no HTTP answer: refused, reset, DNS (retried); OS error codes in words
 │    └── APITimeoutError       a request ran past its timeout (retried)
 ├── APIStatusError             the server answered 4xx/5xx: .status_code, .message, .body, .request_id
 │    ├── BadRequestError       400, a field breaks a rule: .field names it
 │    ├── AuthenticationError   401, missing or unknown key
 │    ├── PermissionDeniedError 403
 │    ├── NotFoundError         404, unknown id (or another key's)
 │    ├── ConflictError         409, idempotency clash, or the generation's state forbids the action
 │    ├── PayloadTooLargeError  413
 │    ├── RateLimitError        429 (retried, honouring .retry_after)
 │    ├── InternalServerError   500 and other 5xx
 │    └── ServiceUnavailableError 503, no engine ready (retried, honouring .retry_after)
 ├── GenerationFailed           the generation ended in error or was cancelled: .generation
 └── WaitTimeout                wait() ran past its timeout: .generation is the last state seen
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clipforge.client.types import Generation

__all__ = [
    "APIConnectionError", "APIStatusError", "APITimeoutError", "AuthenticationError", "BadRequestError",
    "ClipforgeClientError", "ConflictError", "GenerationFailed", "InternalServerError", "NotFoundError",
    "PayloadTooLargeError", "PermissionDeniedError", "RateLimitError", "ServiceUnavailableError", "WaitTimeout",
]


class ClipforgeClientError(Exception):
    """Root of every error the SDK raises."""


class APIConnectionError(ClipforgeClientError):
    def __init__(self, message: str, *, request_url: str | None = None) -> None:
        super().__init__(message)
        self.message, self.request_url = message, request_url


class APITimeoutError(APIConnectionError):
    pass


class APIStatusError(ClipforgeClientError):
    def __init__(self, message: str, *, status_code: int, body: Any = None, request_id: str | None = None,
                 field: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message, self.status_code, self.body, self.request_id = message, status_code, body, request_id
        self.field, self.retry_after = field, retry_after

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status_code})"


class BadRequestError(APIStatusError):
    pass


class AuthenticationError(APIStatusError):
    pass


class PermissionDeniedError(APIStatusError):
    pass


class NotFoundError(APIStatusError):
    pass


class ConflictError(APIStatusError):
    pass


class PayloadTooLargeError(APIStatusError):
    pass


class RateLimitError(APIStatusError):
    pass


class InternalServerError(APIStatusError):
    pass


class ServiceUnavailableError(APIStatusError):
    pass


STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
    409: ConflictError, 413: PayloadTooLargeError, 422: BadRequestError, 429: RateLimitError,
    503: ServiceUnavailableError,
}


def status_error(status_code: int) -> type[APIStatusError]:
    if status_code in STATUS_ERRORS:
        return STATUS_ERRORS[status_code]
    return InternalServerError if status_code >= 500 else APIStatusError


class GenerationFailed(ClipforgeClientError):
    def __init__(self, generation: Generation) -> None:
        error = generation.error
        reason = f"{error.name}: {error.message}" if error else f"status {generation.status!r}"
        super().__init__(f"generation {generation.id} failed: {reason}")
        self.generation = generation


class WaitTimeout(ClipforgeClientError, TimeoutError):
    def __init__(self, generation: Generation, timeout: float) -> None:
        progress = f", {generation.progress}%" if generation.progress is not None else ""
        super().__init__(f"generation {generation.id} is still {generation.status}{progress} after {timeout:g} s")
        self.generation, self.timeout = generation, timeout
