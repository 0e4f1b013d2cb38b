"""What a job leaves in the artifact store, and when it goes.

Outputs (`<media_token>/...`) go when they expire. Input images (`inputs/<token>/...`, stored by the
api at create) go as soon as nothing can use them: when the outputs expire, and when the job is
cancelled, deleted or fails for good. The api deletes them for cancels and deletes it answers, the
runner for jobs it ends, and `EndedJobSweeper` for jobs the store itself ended (a lost worker's job
past its attempts, a cancel that met an expired lease, a hand-back of a cancelled job).
"""

from __future__ import annotations

import logging

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
