"""A fleet on one machine: 2 api processes and 3 worker processes on PostgreSQL, shared local media.

200 jobs submitted concurrently through both apis each run exactly once and complete; `kill -9` of
a worker mid-job: another worker retries that job and it completes; nothing is lost.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from fleet.fleet_helpers import Fleet
from helpers import find_postgres

PG_URL, PG_SKIP_REASON = find_postgres()
pytestmark = pytest.mark.skipif(PG_URL is None, reason=PG_SKIP_REASON or "PostgreSQL unreachable")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    f = Fleet(Path(tmp_path_factory.mktemp("fleet")), PG_URL)
    migrated = f.cli("migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "applied 0001_init.sql" in migrated.stdout and "applied 0002_finished_index.sql" in migrated.stdout
    again = f.cli("migrate")
    assert "up to date" in again.stdout and "applied" not in again.stdout.replace("up to date", "")
    try:
        yield f.start(apis=2, workers=3)
    finally:
        f.stop()


def submit(fleet: Fleet, prompts: list[str], model: str = "fleet/count") -> list[str]:
    clients = [fleet.client(0), fleet.client(1)]

    def one(i: int) -> str:
        r = clients[i % 2].post("/v2/video/generations", json={"model": model, "prompt": prompts[i], "seed": i})
        assert r.status_code == 200, r.text
        return r.json()["id"]

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(len(prompts))))


def wait_all_terminal(fleet: Fleet, ids: list[str], timeout: float = 60) -> dict[str, tuple[str, int, str]]:
    deadline = time.time() + timeout
    with fleet.db() as conn:
        while True:
            rows = conn.execute("SELECT id, status, attempts, worker_id FROM jobs WHERE id = ANY(%s)",
                                (ids,)).fetchall()
            states = {r[0]: (r[1], r[2], r[3]) for r in rows}
            if len(states) == len(ids) and all(s[0] in ("completed", "failed", "cancelled") for s in states.values()):
                return states
            assert time.time() < deadline, f"not done: {sorted(s[0] for s in states.values())}\n{fleet.logs()}"
            time.sleep(0.2)


def test_200_jobs_through_two_apis_each_run_exactly_once(fleet: Fleet):
    prompts = [f"job-{i:03d}" for i in range(200)]
    ids = submit(fleet, prompts)
    assert len(set(ids)) == 200
    states = wait_all_terminal(fleet, ids, timeout=90)
    assert {s[0] for s in states.values()} == {"completed"}, fleet.logs()
    assert {s[1] for s in states.values()} == {1}  # one attempt each
    runs = fleet.invocations()
    assert {p: runs[p] for p in prompts} == {p: 1 for p in prompts}  # the engine ran each exactly once
    workers = {s[2] for s in states.values()}
    assert len(workers) == 3, workers  # all three workers took jobs

    # Either api answers for any job, with a video the other api serves from the shared media dir.
    for k, job_id in enumerate(ids[:10]):
        body = fleet.client((k + 1) % 2).get(f"/v2/video/generations/{job_id}").json()
        assert body["status"] == "completed" and body["video"]["file_size"] > 0
        video = httpx.get(body["video"]["url"])
        assert video.status_code == 200 and video.content[4:8] == b"ftyp"


def test_kill_9_of_a_worker_mid_job_is_retried_by_another(fleet: Fleet):
    [slow] = submit(fleet, ["slow-victim"], model="fleet/slow")
    deadline = time.time() + 30
    with fleet.db() as conn:
        while True:
            status, worker_id, progress = conn.execute("SELECT status, worker_id, progress FROM jobs WHERE id = %s",
                                                       (slow,)).fetchone()
            if status == "running" and progress > 0:
                break
            assert time.time() < deadline, fleet.logs()
            time.sleep(0.1)
    pid = int(worker_id.rsplit("-", 2)[1])
    victim = next(p for p in fleet.workers if p.pid == pid)
    os.kill(pid, signal.SIGKILL)  # mid-job: no chance to hand the job back
    victim.wait(timeout=10)
    others = submit(fleet, [f"after-kill-{i}" for i in range(20)])

    states = wait_all_terminal(fleet, [slow, *others], timeout=60)
    status, attempts, final_worker = states[slow]
    assert (status, attempts) == ("completed", 2), fleet.logs()
    assert final_worker != worker_id
    runs = fleet.invocations()
    assert runs["slow-victim"] == 2  # killed once, then run to the end by another worker
    assert all(states[i][0] == "completed" for i in others)
    assert all(runs[f"after-kill-{i}"] == 1 for i in range(20))
    body = fleet.client(1).get(f"/v2/video/generations/{slow}").json()
    assert body["status"] == "completed" and httpx.get(body["video"]["url"]).status_code == 200
    with fleet.db() as conn:
        assert conn.execute("SELECT count(*) FROM jobs WHERE status NOT IN ('completed')").fetchone()[0] == 0
