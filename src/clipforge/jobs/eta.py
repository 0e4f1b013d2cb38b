"""Queue wait estimates: how long a queued job may wait before it starts."""

from __future__ import annotations

from statistics import fmean

from clipforge.core.job import Job
from clipforge.core.routing import WORKER_TTL, engine_states
from clipforge.jobs.base import JobStore

RUN_SAMPLE = 20  # recent completed runs averaged per engine


def queue_eta_seconds(store: JobStore, job: Job, position: int) -> float | None:
    """(position + 1) x the mean run time of the engine's recent completed jobs, divided by the live
    workers ready for that engine; None without run history or without a ready worker."""
    try:
        runs = store.recent_run_seconds(job.engine, RUN_SAMPLE)
    except NotImplementedError:
        return None
    if not runs:
        return None
    workers = engine_states(store.live_workers(WORKER_TTL)).get(job.engine, {}).get("workers", 0)
    if not workers:
        return None
    return round((position + 1) * fmean(runs) / workers, 1)
