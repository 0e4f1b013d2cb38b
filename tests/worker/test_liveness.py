"""A worker busy with a long job stays live: its registration is refreshed by a heartbeat of its own,
so `/readyz` and creates keep answering while the only worker runs a job longer than the dead-worker
threshold (made short here)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from clipforge.api import submit, system
from clipforge.api.app import create_app
from clipforge.core.routing import parse_routing
from clipforge.core.settings import Settings
from clipforge.jobs.sqlite import SQLiteJobStore
from clipforge.storage.local import LocalArtifactStore
from clipforge.worker import loop
from clipforge.worker.loop import Worker

TTL = 1.0  # seconds of silence after which a worker counts as dead (20 s in production)
ROUTING = parse_routing({
    "models": {"long": {"engines": ["long"]}},
    "engines": {"long": {"class": "clipforge.engines.fixed:FixedEngine", "steps": 16, "step_seconds": 0.25}},
})


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(system, "WORKER_TTL", TTL)
    monkeypatch.setattr(submit, "WORKER_TTL", TTL)
    monkeypatch.setattr(loop, "REGISTER_EVERY", TTL / 4)
    store = SQLiteJobStore(tmp_path / "jobs.db")
    artifacts = LocalArtifactStore(tmp_path / "media")
    settings = Settings(home=tmp_path, api_keys=("k",), lease_seconds=2, heartbeat_seconds=0.25)
    worker = Worker(store, artifacts, ROUTING, settings, worker_id="w-long")
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    app = create_app(settings, store=store, artifacts=artifacts, routing=ROUTING)
    with TestClient(app, headers={"Authorization": "Bearer k"}) as client:
        yield client, store
    worker.request_stop(0)
    thread.join(15)
    store.close()


def wait_for(check, timeout: float = 60.0):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def test_a_job_longer_than_the_dead_worker_threshold_keeps_the_api_ready(served):
    client, store = served
    wait_for(lambda: client.get("/readyz").status_code == 200)
    first = client.post("/v2/video/generations", json={"model": "long", "prompt": "a long one", "aspect_ratio": "1:1"})
    assert first.status_code == 200, first.text
    job_id = first.json()["id"]
    wait_for(lambda: store.get(job_id).status.value == "running")
    started = time.monotonic()
    while time.monotonic() - started < 3 * TTL:  # the job runs 4 s: three thresholds of silence, and more
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert store.get(job_id).status.value == "running"
        time.sleep(0.1)
    second = client.post("/v2/video/generations", json={"model": "long", "prompt": "next", "aspect_ratio": "1:1"})
    assert second.status_code == 200, second.text
    assert [w["id"] for w in store.live_workers(TTL)] == ["w-long"]
    done = wait_for(lambda: (j := store.get(job_id)).terminal and j)
    assert (done.status.value, done.attempts) == ("completed", 1)
