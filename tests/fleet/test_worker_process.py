"""`clipforge worker` as a process: graceful SIGTERM (finish within the grace period, else hand the job
back without counting an attempt), --concurrency with --engines, and `clipforge migrate`. On SQLite, so
these run wherever the suite does."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clipforge.core.job import Job, new_job_id
from clipforge.core.spec import GenerationSpec
from clipforge.jobs.base import JobStore, open_store
from fleet.fleet_helpers import Fleet


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path, None)
    yield f
    f.stop()


@pytest.fixture
def store(fleet: Fleet) -> Iterator[JobStore]:
    s = open_store(fleet.database_url)
    yield s
    s.close()


def enqueue(store: JobStore, prompt: str, model: str = "fleet/slow", engine: str = "slowcount") -> str:
    job = Job(id=new_job_id(model), owner="o", model=model, engine=engine,
              params={"spec": GenerationSpec(prompt=prompt, seed=len(prompt)).to_dict()})
    return store.create(job)[0].id


def wait_for(check, timeout: float = 30, what: str = "", fleet: Fleet | None = None):  # noqa: ANN001, ANN201
    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.time() < deadline, f"timed out waiting for {what}\n{fleet.logs() if fleet else ''}"
        time.sleep(0.1)


def running(store: JobStore, job_id: str) -> bool:
    job = store.get(job_id)
    return job.status.value == "running" and job.progress > 0


def test_sigterm_lets_the_running_job_finish_within_the_grace_period(fleet, store):
    first, second = enqueue(store, "finish-me"), enqueue(store, "leave-me-queued")
    worker = fleet.spawn_worker(CLIPFORGE_SHUTDOWN_GRACE_SECONDS="30")
    wait_for(lambda: running(store, first), what="the first job to run", fleet=fleet)
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, fleet.logs()
    done = store.get(first)
    assert (done.status.value, done.attempts) == ("completed", 1)
    assert store.get(second).status.value == "queued"  # no claim after SIGTERM
    assert fleet.invocations() == {"finish-me": 1}
    assert store.live_workers(60) == []  # it removed its row


def test_sigterm_past_the_grace_period_hands_the_job_back(fleet, store):
    job_id = enqueue(store, "hand-me-back")
    worker = fleet.spawn_worker(CLIPFORGE_SHUTDOWN_GRACE_SECONDS="0.5")
    wait_for(lambda: running(store, job_id), what="the job to run", fleet=fleet)
    os.kill(worker.pid, signal.SIGTERM)
    started = time.monotonic()
    assert worker.wait(timeout=20) == 0, fleet.logs()
    assert time.monotonic() - started < 5  # the 6 s job did not run to its end
    back = store.get(job_id)
    assert (back.status.value, back.attempts, back.worker_id, back.progress) == ("queued", 0, None, 0)
    assert "handed back to the queue" in fleet.logs()

    fleet.spawn_worker()  # another worker takes it at once (no lease to wait out) and finishes it
    done = wait_for(lambda: (j := store.get(job_id)).terminal and j, what="the retry", fleet=fleet)
    assert (done.status.value, done.attempts) == ("completed", 1)
    assert fleet.invocations() == {"hand-me-back": 2}


def test_concurrency_runs_workers_side_by_side_for_the_named_engines(fleet, store):
    slow = [enqueue(store, f"slow-{i}") for i in range(2)]
    other = enqueue(store, "not-for-us", model="fleet/count", engine="counting")
    pool = fleet.spawn_worker("--concurrency", "2", "--engines", "slowcount", CLIPFORGE_SHUTDOWN_GRACE_SECONDS="0.5")
    workers = wait_for(lambda: len(live := store.live_workers(30)) == 2 and live, what="2 workers", fleet=fleet)
    assert all(set(w["info"]["engines"]) == {"slowcount"} for w in workers)
    assert len({w["info"]["pid"] for w in workers} | {pool.pid}) == 3  # two child processes
    wait_for(lambda: all(running(store, j) for j in slow), what="both slow jobs at once", fleet=fleet)
    assert store.get(other).status.value == "queued"  # its engine is not served here

    os.kill(pool.pid, signal.SIGTERM)  # the pool passes it on; each child hands its job back
    assert pool.wait(timeout=30) == 0, fleet.logs()
    assert [(store.get(j).status.value, store.get(j).attempts) for j in slow] == [("queued", 0)] * 2
    assert store.live_workers(60) == []


def test_worker_refuses_engines_no_model_routes(fleet):
    result = fleet.cli("worker", "--engines", "slowcount,nosuch")
    assert result.returncode == 1
    assert "--engines: nosuch not routed by any model" in result.stderr


def test_migrate_applies_then_reports_up_to_date(fleet):
    first = fleet.cli("migrate")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[:2] == ["applied 0001_init.sql", "applied 0002_finished_index.sql"]
    second = fleet.cli("migrate")
    assert second.returncode == 0 and "up to date" in second.stdout and "applied " not in second.stdout
