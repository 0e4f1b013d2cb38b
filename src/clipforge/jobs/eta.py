"""Queue wait estimates: how long a queued job may wait before it starts.

With live workers ready for the job's engine: (position + 1) x the mean run time of the engine's recent
completed jobs, over those workers. With none, but the engine autoscaled (`[autoscale]` in the models
config, workers scaled to zero), the job waits for a worker to start: the estimate adds the configured
cold start and counts the queue ahead as if one worker serves it (more may start, so it is an upper
bound), and the poll's stage says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import fmean

from clipforge.core.job import Job
from clipforge.core.routing import WORKER_TTL, Routing, engine_states
from clipforge.jobs.base import JobStore

RUN_SAMPLE = 20  # recent completed runs averaged per engine
COLD_START_STAGE = "waiting for a worker to start"


@dataclass(frozen=True)
class QueueEstimate:
    eta_seconds: float | None
    stage: str | None = None  # COLD_START_STAGE while an autoscaled engine has no live worker


def _recent_runs(store: JobStore, engine: str) -> list[float]:
    try:
        return store.recent_run_seconds(engine, RUN_SAMPLE)
    except NotImplementedError:
        return []


def queue_estimate(store: JobStore, job: Job, position: int, routing: Routing | None = None) -> QueueEstimate:
    """The ETA of a queued job at `position` (None without run history or without a worker to run it)."""
    runs = _recent_runs(store, job.engine)
    autoscaled = routing is not None and job.engine in routing.autoscaled
    if not runs and not autoscaled:
        return QueueEstimate(None)  # nothing to go on: spare the poll a worker query
    states = engine_states(store.live_workers(WORKER_TTL))
    workers = states.get(job.engine, {}).get("workers", 0)
    if workers:
        return QueueEstimate(round((position + 1) * fmean(runs) / workers, 1) if runs else None)
    if autoscaled and routing is not None and job.engine not in states:
        ahead = (position + 1) * fmean(runs) if runs else 0.0
        return QueueEstimate(round(routing.cold_start_seconds + ahead, 1), COLD_START_STAGE)
    return QueueEstimate(None)


def queue_eta_seconds(store: JobStore, job: Job, position: int, routing: Routing | None = None) -> float | None:
    """(position + 1) x the mean run time of the engine's recent completed jobs, divided by the live
    workers ready for that engine; None without run history or without a ready worker."""
    return queue_estimate(store, job, position, routing).eta_seconds
