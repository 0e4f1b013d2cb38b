"""Workers: claim a job, run its engine, encode, store artifacts, finish; heartbeat and cancel."""

from clipforge.worker.loop import Worker
from clipforge.worker.runner import JobRunner

__all__ = ["JobRunner", "Worker"]
