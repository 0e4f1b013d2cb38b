"""The one exception tree of clipforge.

ClipforgeError
 ├── InvalidInput        a request field breaks a rule (api: 400)
 ├── NotFound            unknown id, or another key's id (api: 404)
 ├── Conflict            idempotency clash, or an action that the job's state forbids (api: 409)
 ├── RateLimited         a per-key limit is reached (api: 429, Retry-After)
 │    └── QuotaExceeded   the key already has its quota of generations queued or running
 ├── NotReady            no engine can serve the request now (api: 503)
 ├── ConfigError         a setting or config file is wrong (CLI: one `Error:` line at start-up)
 ├── Cancelled           raised inside an engine when its job's cancel flag is set
 └── EngineError         an engine failed; the message is shown to the user
      └── EngineUnavailable  a transient failure (a hosted provider down or rate limiting past its
                             retries): the job fails over to the next engine of its model's route
      └── OutOfMemory     the accelerator ran out of memory; the message says what to change

HTTP status codes appear only in the api layer.
"""

from __future__ import annotations


class ClipforgeError(Exception):
    """Root of every error clipforge raises on purpose."""


class InvalidInput(ClipforgeError):
    def __init__(self, field: str, message: str, rule: str = "invalid", location: str = "body") -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.rule = rule
        self.location = location  # where the field is: body, header, query


class NotFound(ClipforgeError):
    pass


class Conflict(ClipforgeError):
    pass


class RateLimited(ClipforgeError):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExceeded(RateLimited):
    """Raised by a job store's `create` when the owner's active jobs are at `max_active`."""

    def __init__(self, limit: int, active: int) -> None:
        super().__init__(f"quota: this key may have {limit} generations queued or running at once and has "
                         f"{active}; wait for one to finish or cancel one", 5.0)
        self.limit, self.active = limit, active


class NotReady(ClipforgeError):
    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConfigError(ClipforgeError, ValueError):
    """A bad setting, URL or config file, found while starting up."""


class Cancelled(ClipforgeError):
    pass


class EngineError(ClipforgeError):
    pass


class EngineUnavailable(EngineError):
    """A transient engine failure: the worker hands the job to the next engine in the model's route,
    if one is ready; otherwise the job fails with this message."""
class OutOfMemory(EngineError):
    """An engine ran out of (GPU) memory; the message names the settings that would make it fit."""
