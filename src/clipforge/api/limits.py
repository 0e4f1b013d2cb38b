"""Per-key request rate limits (sliding window, per api process) and active-job quotas."""

from __future__ import annotations

import threading
import time
from collections import deque

from clipforge.core.errors import QuotaExceeded, RateLimited
from clipforge.core.job import JobStatus
from clipforge.core.keys import KeyPolicy
from clipforge.jobs.base import JobStore

WINDOW = 60.0
MAX_EVENT_STREAMS = 32  # SSE streams one key may hold open at once, per api process


class RateLimiter:
    """Requests per minute per key, counted in this process over a sliding 60 s window."""

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._streams: dict[str, int] = {}
        self._lock = threading.Lock()

    def stream_opened(self, owner: str, limit: int = MAX_EVENT_STREAMS) -> None:
        """Count an event stream the key opens; RateLimited past `limit` open at once (a stream is one
        request to the rate limit, but holds the api, polling the store, for as long as it stays open)."""
        with self._lock:
            if self._streams.get(owner, 0) >= limit:
                raise RateLimited(f"rate limit: this key may hold {limit} event streams open at once; close one "
                                  "or poll instead", 5.0)
            self._streams[owner] = self._streams.get(owner, 0) + 1

    def stream_closed(self, owner: str) -> None:
        with self._lock:
            left = self._streams.get(owner, 0) - 1
            if left > 0:
                self._streams[owner] = left
            else:
                self._streams.pop(owner, None)

    def hit(self, policy: KeyPolicy, now: float | None = None) -> None:
        limit = policy.requests_per_minute
        if limit <= 0:
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.setdefault(policy.owner, deque())
            while hits and hits[0] <= now - WINDOW:
                hits.popleft()
            if len(hits) >= limit:
                retry = hits[0] + WINDOW - now
                raise RateLimited(f"rate limit: this key may make {limit} requests per minute; "
                                  f"retry in {max(1, round(retry))} s", retry)
            hits.append(now)


def check_active_jobs(store: JobStore, owner: str, limit: int) -> None:
    """Refuse a new generation early when the key already has its quota queued or running (a hint: the
    store's `create(..., max_active=limit)` is what enforces it, atomically)."""
    if limit <= 0:
        return
    active = sum(len(store.list(owner, limit=limit, status=s)) for s in (JobStatus.QUEUED, JobStatus.RUNNING))
    if active >= limit:
        raise QuotaExceeded(limit, active)
