"""What a job leaves in the artifact store, and when it goes.

Outputs (`<media_token>/...`) go when they expire. Input images (`inputs/<token>/...`, stored by the
api at create) go as soon as nothing can use them: when the outputs expire, and when the job is
cancelled, deleted or fails for good. The api deletes them for cancels and deletes it answers, the
runner for jobs it ends, `fail_overdue_queued` for jobs no worker started within the queue-wait limit,
and `EndedJobSweeper` for jobs the store itself ended (a lost worker's job past its attempts, a cancel
that met an expired lease, a hand-back of a cancelled job).
"""

from __future__ import annotations

import logging
import threading

from clipforge.core.job import Job, JobStatus
from clipforge.jobs.base import JobStore
from clipforge.storage.base import ArtifactStore

log = logging.getLogger(__name__)

ENDED_FOR_GOOD = (JobStatus.FAILED, JobStatus.CANCELLED)
CLOCK_SLACK = 600.0  # seconds: the store's clock (PostgreSQL's) may run behind this machine's


def delete_inputs(artifacts: ArtifactStore, job: Job) -> int:
    """Delete the job's stored input images; how many blobs went."""
    prefix = job.params.get("inputs_prefix")
    return artifacts.delete_prefix(prefix) if prefix else 0


def delete_expired(artifacts: ArtifactStore, job: Job) -> None:
    """An expired job's outputs and inputs."""
    artifacts.delete_prefix(job.media_token)
    delete_inputs(artifacts, job)


def fail_overdue_queued(store: JobStore, artifacts: ArtifactStore, max_queue_seconds: float) -> list[Job]:
    """Fail the jobs no worker started within `max_queue_seconds` of being queued (0: none ever) and
    delete their inputs. The store does it atomically (a job being claimed at that moment is not
    touched) and enqueues their webhooks; the failed jobs no longer count against their owner's quota."""
    if max_queue_seconds <= 0:
        return []
    jobs = store.fail_overdue_queued(max_queue_seconds)
    for job in jobs:
        log.warning("job %s: no worker started it within %g s of being queued (engine %s); failed with "
                    "queue_timeout", job.id, max_queue_seconds, job.engine)
        delete_inputs(artifacts, job)
    return jobs


class QueueWaitSweeper:
    """A thread that runs `fail_overdue_queued` every `interval` seconds: the api process runs one, so
    the queue-wait limit holds even where no worker runs at all (an autoscaled engine scaled to zero
    whose worker never comes up). Workers do the same in their housekeeping; the store makes the
    duplicates harmless."""

    def __init__(self, store: JobStore, artifacts: ArtifactStore, max_queue_seconds: float,
                 interval: float) -> None:
        self.store, self.artifacts = store, artifacts
        self.max_queue_seconds, self.interval = max_queue_seconds, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.max_queue_seconds > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="queue-wait-sweeper", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                fail_overdue_queued(self.store, self.artifacts, self.max_queue_seconds)
            except Exception:  # the store may be briefly unreachable: try again next time
                log.exception("queue-wait sweep failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


class EndedJobSweeper:
    """Pages through jobs finished since shortly before this worker started (`finished_since`) and
    deletes the inputs of those that failed or were cancelled. Every worker sweeps, so a job ended
    inside any worker's claim (where expired leases are reclaimed) is swept by that worker."""

    def __init__(self, store: JobStore, artifacts: ArtifactStore, since: float, page: int = 500) -> None:
        self.store, self.artifacts, self.page = store, artifacts, page
        self.cursor: tuple[float, str] = (since - CLOCK_SLACK, "")

    def sweep(self) -> int:
        """Delete what is due; returns how many jobs had inputs deleted."""
        swept = 0
        while True:
            jobs = self.store.finished_since(*self.cursor, limit=self.page)
            for job in jobs:
                if job.status in ENDED_FOR_GOOD and delete_inputs(self.artifacts, job):
                    swept += 1
            if jobs:
                self.cursor = (jobs[-1].finished_at or self.cursor[0], jobs[-1].id)
            if len(jobs) < self.page:
                return swept
