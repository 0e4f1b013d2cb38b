"""Queue ETAs from recent run times and the live workers ready for the engine."""

from __future__ import annotations

from clipforge.core.job import Job, JobStatus, new_job_id
from clipforge.core.routing import parse_routing
from clipforge.jobs.eta import COLD_START_STAGE, queue_estimate, queue_eta_seconds
from clipforge.jobs.memory import MemoryJobStore


def job(engine: str = "fixed") -> Job:
    return Job(id=new_job_id("m"), owner="alice", model="m", engine=engine, params={"spec": {}})


def ready(store: MemoryJobStore, worker_id: str, engine: str = "fixed", is_ready: bool = True) -> None:
    store.register_worker(worker_id, {"engines": {engine: {"ready": is_ready}}})


def test_eta_is_position_plus_one_times_mean_run_over_ready_workers():
    store = MemoryJobStore()
    waiting = job()
    assert queue_eta_seconds(store, waiting, 0) is None  # no history yet
    for seconds in (2.0, 4.0):
        done = job()
        store.create(done)
        store.claim("w0", ["fixed"], 60)
        store.finish(done.id, "w0", JobStatus.COMPLETED, outputs={"run_seconds": seconds})
    assert queue_eta_seconds(store, waiting, 0) is None  # no live worker serves the engine
    ready(store, "w1")
    ready(store, "w-other", engine="ltx2")
    ready(store, "w-unready", is_ready=False)
    assert queue_eta_seconds(store, waiting, 0) == 3.0
    assert queue_eta_seconds(store, waiting, 2) == 9.0
    ready(store, "w2")
    assert queue_eta_seconds(store, waiting, 2) == 4.5
    assert queue_eta_seconds(store, job("ltx2"), 0) is None  # that engine has no history


def test_an_autoscaled_engine_with_no_worker_waits_a_cold_start_and_says_so():
    routing = parse_routing({"models": {"m": {"engines": ["fixed"]}},
                             "autoscale": {"engines": ["fixed"], "cold_start_seconds": 240}})
    store = MemoryJobStore()
    waiting = job()
    est = queue_estimate(store, waiting, 0, routing)
    assert (est.eta_seconds, est.stage) == (240.0, COLD_START_STAGE)  # no history: the cold start alone
    done = job()
    store.create(done)
    store.claim("w0", ["fixed"], 60)
    store.finish(done.id, "w0", JobStatus.COMPLETED, outputs={"run_seconds": 10.0})
    assert queue_estimate(store, waiting, 2, routing).eta_seconds == 240 + 3 * 10.0
    assert queue_eta_seconds(store, waiting, 2) is None  # not autoscaled without the routing
    ready(store, "w1")  # a worker came up: the usual estimate, no cold start
    est = queue_estimate(store, waiting, 2, routing)
    assert (est.eta_seconds, est.stage) == (30.0, None)
