"""Everything the handlers share, built once by the app factory and hung on `app.state.services`."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from clipforge.api.async_store import AsyncJobStore
from clipforge.api.auth import KeyRing
from clipforge.api.limits import RateLimiter
from clipforge.api.submit import Submitter
from clipforge.core.job import Job
from clipforge.core.routing import Routing
from clipforge.core.settings import Settings
from clipforge.jobs.base import JobStore
from clipforge.storage.base import ArtifactStore, artifact_url


@dataclass
class Services:
    settings: Settings
    store: JobStore
    artifacts: ArtifactStore
    routing: Routing
    keys: KeyRing
    submitter: Submitter
    rate_limiter: RateLimiter
    jobs: AsyncJobStore = field(init=False)  # the store for async handlers: `await svc.jobs.get(...)`

    def __post_init__(self) -> None:
        self.jobs = AsyncJobStore(self.store)

    def media_url(self, request: Request, key: str | None, job: Job) -> str | None:
        """A URL for an artifact: presigned where the store signs, else served by /media."""
        return artifact_url(self.artifacts, key, job.expires_at, self.settings.public_url or base_url(request))


def base_url(request: Request) -> str:
    """`str(request.base_url)`, from a small cache keyed by what it depends on (it is costly to work
    out, and every status poll of a finished generation links its media)."""
    scope = request.scope
    host = next((v for k, v in scope.get("headers") or () if k == b"host"), None)
    server = scope.get("server")
    return _base_url(scope.get("scheme", "http"), host, tuple(server) if server else None,
                     scope.get("app_root_path", scope.get("root_path", "")))


@functools.lru_cache(maxsize=64)  # bounded: the Host header is the client's to choose
def _base_url(scheme: str, host: bytes | None, server: tuple[Any, ...] | None, root_path: str) -> str:
    scope = {"type": "http", "scheme": scheme, "server": server, "root_path": root_path, "path": "/",
             "query_string": b"", "headers": [(b"host", host)] if host is not None else []}
    return str(Request(scope).base_url)


async def services(request: Request) -> Services:
    return request.app.state.services
