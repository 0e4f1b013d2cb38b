"""Everything the handlers share, built once by the app factory and hung on `app.state.services`."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    """The request's base URL, worked out once per request (a view links several media)."""
    scope = request.scope
    if "clipforge.base_url" not in scope:
        scope["clipforge.base_url"] = str(request.base_url)
    return scope["clipforge.base_url"]


async def services(request: Request) -> Services:
    return request.app.state.services
