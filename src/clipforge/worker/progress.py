"""Throttled progress reporting and cancel/lease checks for one running job."""

from __future__ import annotations

import threading
import time

from clipforge.core.errors import Cancelled, ClipforgeError, NotFound
from clipforge.jobs.base import JobStore, LeaseState

ENGINE_SHARE = 95  # percent of progress the engine + encode account for; the rest is storing


class LeaseLost(ClipforgeError):
    """The job's lease expired and another worker may run it: stop and write nothing."""


class JobProgress:
    """Carries progress from the engine thread to the store, and cancel/lease state back.

    A background thread renews the lease every `heartbeat_seconds` and pushes progress at most
    every `min_interval` seconds, so an engine may call `step` as often as it likes.
    """

    def __init__(self, store: JobStore, job_id: str, worker_id: str, lease_seconds: float,
                 heartbeat_seconds: float, min_interval: float = 0.5) -> None:
        self.store, self.job_id, self.worker_id = store, job_id, worker_id
        self.lease_seconds, self.heartbeat_seconds, self.min_interval = lease_seconds, heartbeat_seconds, min_interval
        self.progress, self.stage = 0, "starting"
        self.state = LeaseState.OK
        self._sent: tuple[int, str] | None = None
        self._last_beat = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id[:8]}", daemon=True)

    def __enter__(self) -> JobProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.min_interval):
            self.beat()

    def beat(self, force: bool = False) -> None:
        current = (self.progress, self.stage)
        due = time.monotonic() - self._last_beat >= self.heartbeat_seconds
        if force or due or current != self._sent:
            state = self.store.heartbeat(self.job_id, self.worker_id, self.lease_seconds, *current)
            if state == LeaseState.LOST and self._deleted():
                # Deleted while running (DELETE /v1/videos/{id}): no other worker has it, so stop as
                # for a cancel, and a hosted engine cancels its upstream job instead of leaving it running.
                state = LeaseState.CANCEL
            if self.state != LeaseState.LOST:
                self.state = state
            self._sent, self._last_beat = current, time.monotonic()

    def _deleted(self) -> bool:
        try:
            self.store.get(self.job_id)
        except NotFound:
            return True
        return False

    def check(self) -> None:
        """Raise if the job should stop now."""
        if self.state == LeaseState.CANCEL:
            raise Cancelled("Cancelled by request")
        if self.state == LeaseState.LOST:
            raise LeaseLost(f"lease on job {self.job_id} lost")

    def step(self, step: int, total: int, stage: str) -> None:
        """An engine's StepCallback: record progress, then stop if cancelled."""
        if total > 0:
            self.progress = max(self.progress, min(ENGINE_SHARE, int(ENGINE_SHARE * step / total)))
        self.stage = stage
        self.check()
