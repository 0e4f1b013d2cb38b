"""The job store as the api's handlers call it: awaitable, and never blocking the event loop.

Store calls block: PostgreSQL queries wait on the network, SQLite writes wait for the database's
write lock (a worker process may hold it). Every such call runs in a worker thread (anyio's pool,
the one FastAPI uses for sync handlers), so one slow call stalls only its own request.

Reads are the exception where the store says they cannot wait (`JobStore.nonblocking_reads`: SQLite
reads through a connection of its own that no writer holds, in WAL mode; the in-memory store): they
run inline, since a thread hop costs more than such a read and status polls are the api's hot path.

Artifact-store and image calls go through `off_loop` (files, S3 uploads, decoding).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from anyio import to_thread

from clipforge.core.job import Job, JobStatus
from clipforge.jobs.base import JobStore

P = ParamSpec("P")
T = TypeVar("T")


async def off_loop(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` in a worker thread."""
    return await to_thread.run_sync(functools.partial(fn, *args, **kwargs))


class AsyncJobStore:
    """Awaitable versions of the JobStore methods the api uses (same names, same answers)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.inline_reads = store.nonblocking_reads

    async def read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A read of the store (`fn` may be a store method or a function over the store): inline
        where the store's reads never wait, else in a thread."""
        if self.inline_reads:
            return fn(*args, **kwargs)
        return await off_loop(fn, *args, **kwargs)

    # -- reads -------------------------------------------------------------------------------
    async def get(self, job_id: str, owner: str | None = None) -> Job:
        return await self.read(self.store.get, job_id, owner)

    async def list(self, owner: str, limit: int = 20, after: str | None = None, order: str = "desc",
                   status: JobStatus | None = None) -> list[Job]:
        return await self.read(self.store.list, owner, limit, after, order, status)

    async def events(self, job_id: str, after_seq: int = 0) -> list[dict[str, Any]]:
        return await self.read(self.store.events, job_id, after_seq)

    async def live_workers(self, within_seconds: float) -> list[dict[str, Any]]:
        return await self.read(self.store.live_workers, within_seconds)

    async def find_by_idempotency_key(self, owner: str, key: str) -> Job | None:
        return await self.read(self.store.find_by_idempotency_key, owner, key)

    # -- writes: always in a thread ----------------------------------------------------------
    async def create(self, job: Job) -> tuple[Job, bool]:
        return await off_loop(self.store.create, job)

    async def cancel(self, job_id: str, owner: str) -> Job:
        return await off_loop(self.store.cancel, job_id, owner)

    async def delete(self, job_id: str, owner: str) -> Job:
        return await off_loop(self.store.delete, job_id, owner)

    async def webhook_secret(self, owner: str, rotate: bool = False) -> str:
        return await off_loop(self.store.webhook_secret, owner, rotate)
