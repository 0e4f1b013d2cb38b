"""The queue-wait limit in a worker's housekeeping: jobs no worker started in time fail, their inputs
go, their webhooks are enqueued; 0 turns it off. The api's sweeper thread does the same."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from clipforge.core.job import Job, JobStatus
from clipforge.core.routing import parse_routing
from clipforge.core.settings import Settings
from clipforge.jobs.cleanup import QueueWaitSweeper
from clipforge.jobs.memory import MemoryJobStore
from clipforge.storage.local import LocalArtifactStore
from clipforge.worker.loop import Worker, housekeeping_interval

ROUTING = parse_routing({"models": {"m": {"engines": ["fixed"]}, "far": {"engines": ["elsewhere"]}},
                         "engines": {"fixed": {"steps": 2}}})


def queued_job(store: MemoryJobStore, artifacts: LocalArtifactStore, waited: float, engine: str = "elsewhere") -> Job:
    prefix = f"inputs/tok-{time.monotonic_ns()}"
    artifacts.put_bytes(f"{prefix}/image.png", b"png", "image/png")
    job = Job(id=f"job-{time.monotonic_ns()}", owner="alice", model="far", engine=engine,
              params={"spec": {"prompt": "p", "duration": 5}, "inputs_prefix": prefix},
              webhook={"url": "https://example.com/hook"}, updated_at=time.time() - waited)
    return store.create(job)[0]


@pytest.mark.parametrize("limit", [30.0, 0.0])
def test_housekeeping_fails_jobs_queued_past_the_limit(tmp_path: Path, limit: float):
    store, artifacts = MemoryJobStore(), LocalArtifactStore(tmp_path / "media")
    worker = Worker(store, artifacts, ROUTING, Settings(home=tmp_path, max_queue_seconds=limit), worker_id="w1")
    old, fresh = queued_job(store, artifacts, waited=60), queued_job(store, artifacts, waited=1)
    worker.expire_outputs()
    if limit == 0:  # never: both still wait, inputs kept
        assert {store.get(j.id).status for j in (old, fresh)} == {JobStatus.QUEUED}
        assert len(list((tmp_path / "media" / "inputs").iterdir())) == 2
        return
    failed = store.get(old.id)
    assert failed.status == JobStatus.FAILED and failed.error["code"] == "queue_timeout"
    assert "within 30 s" in failed.error["message"] and "'elsewhere'" in failed.error["message"]
    assert not (tmp_path / "media" / old.params["inputs_prefix"]).exists()
    assert (tmp_path / "media" / fresh.params["inputs_prefix"] / "image.png").exists()
    assert store.get(fresh.id).status == JobStatus.QUEUED
    assert [d["event_type"] for d in store.deliveries(old.id)] == ["generation.failed"]


def test_short_limits_make_housekeeping_run_often_enough():
    assert housekeeping_interval(Settings()) == 60.0
    assert housekeeping_interval(Settings(max_queue_seconds=8)) == 2.0
    assert housekeeping_interval(Settings(max_queue_seconds=0.5)) == 1.0
    assert housekeeping_interval(Settings(max_queue_seconds=0, retention_seconds=20)) == 5.0


def test_the_api_sweeper_thread_fails_overdue_jobs_and_stops(tmp_path: Path):
    store, artifacts = MemoryJobStore(), LocalArtifactStore(tmp_path / "media")
    job = queued_job(store, artifacts, waited=1.0)
    sweeper = QueueWaitSweeper(store, artifacts, max_queue_seconds=1.5, interval=0.05)
    sweeper.start()
    try:
        deadline = time.time() + 20
        while store.get(job.id).status == JobStatus.QUEUED:
            assert time.time() < deadline, "the sweeper never failed the job"
            time.sleep(0.05)
    finally:
        sweeper.stop()
    assert store.get(job.id).error["code"] == "queue_timeout"
    assert not (tmp_path / "media" / job.params["inputs_prefix"]).exists()
    off = QueueWaitSweeper(store, artifacts, max_queue_seconds=0, interval=0.05)
    off.start()
    assert off._thread is None  # 0: no thread at all
    off.stop()
