"""Log records as text or one JSON object per line, carrying the request id and job id in scope.

The api sets `request_id` for the duration of each request and the worker sets `job_id` (and
`worker_id`) while it runs a job; every record logged meanwhile, by any logger, carries them.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import http
import json
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

from clipforge.core.errors import ConfigError

LOG_FORMATS = ("text", "json")

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("clipforge_request_id", default=None)
job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("clipforge_job_id", default=None)
worker_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("clipforge_worker_id", default=None)

_CONTEXT = (("request_id", request_id), ("job_id", job_id), ("worker_id", worker_id))


@contextlib.contextmanager
def bound(var: contextvars.ContextVar[str | None], value: str | None) -> Iterator[None]:
    """Set a context variable for the duration of a block."""
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


class ContextFilter(logging.Filter):
    """Copies the ids in scope onto each record (as attributes), so any formatter can use them."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _CONTEXT:
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the ids in scope, exception text."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for name, var in _CONTEXT:
            value = getattr(record, name, None) or var.get()
            if value:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """The classic line, with `[request_id=...]` / `[job_id=...]` appended when in scope."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{name}={getattr(record, name)}" for name, _ in _CONTEXT[:2]
                       if getattr(record, name, None))
        return f"{line} [{ids}]" if ids else line


class AccessFormatter(logging.Formatter):
    """uvicorn's access line, `INFO:     127.0.0.1:5555 - "GET /path HTTP/1.1" 200 OK`, made directly
    from the record's arguments: uvicorn's own formatter copies every record first, which cost about
    as much as serving a status poll (`bench/api.py`)."""

    def format(self, record: logging.LogRecord) -> str:
        client, method, path, version, status = record.args  # type: ignore[misc]
        prefix = f"{record.levelname}:".ljust(9)
        return f'{prefix} {client} - "{method} {path} HTTP/{version}" {status} {_phrase(int(status))}'


@functools.cache
def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own text logging setup with AccessFormatter for the access log."""
    stream = {"class": "logging.StreamHandler"}
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"default": {"()": "uvicorn.logging.DefaultFormatter", "fmt": "%(levelprefix)s %(message)s",
                                   "use_colors": None},
                       "access": {"()": f"{__name__}.AccessFormatter"}},
        "handlers": {"default": {**stream, "formatter": "default", "stream": "ext://sys.stderr"},
                     "access": {**stream, "formatter": "access", "stream": "ext://sys.stdout"}},
        "loggers": {"uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
                    "uvicorn.error": {"level": "INFO"},
                    "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False}},
    }


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Route every logger (uvicorn's too, once it propagates) through one stderr handler."""
    if fmt not in LOG_FORMATS:
        raise ConfigError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # Neither format shows the caller, thread or process name: skip working them out for every record
    # (the logging HOWTO's optimisations; the access log writes one record per request).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logMultiprocessing = False

