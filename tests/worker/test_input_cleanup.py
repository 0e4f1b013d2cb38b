"""Input images (`inputs/<token>/...`) are deleted once nothing can use them: when the outputs expire,
when the job fails for good or is cancelled, and when the store itself ends a job (lost worker).
Run against a local directory and an S3-compatible server."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from clipforge.core.job import Job, JobStatus
from clipforge.core.routing import parse_routing
from clipforge.core.settings import Settings
from clipforge.core.spec import GenerationSpec
from clipforge.jobs.memory import MemoryJobStore
from clipforge.storage.base import ArtifactStore
from clipforge.storage.local import LocalArtifactStore
from clipforge.storage.s3 import S3ArtifactStore
from clipforge.worker.loop import Worker
from helpers import gradient_image
from storage.s3_server import ACCESS_KEY, REGION, SECRET_KEY, S3Server

ROUTING = parse_routing({
    "models": {"m": {"engines": ["fixed", "slow", "broken"]}},
    "engines": {"fixed": {"steps": 2}, "slow": {"class": "clipforge.engines.fixed:FixedEngine", "steps": 100,
                                                "step_seconds": 0.05},
                "broken": {"class": "clipforge.engines.fixed:FixedEngine", "fail": "weights are corrupt"}},
})
PNG = gradient_image(64, 48)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def artifacts(request, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "media")
    server: S3Server = request.getfixturevalue("s3_server")
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    server.create_bucket(bucket)
    return S3ArtifactStore(bucket, "media", endpoint_url=server.endpoint_url, region=REGION,
                           access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY, addressing_style="path")


@pytest.fixture
def worker(artifacts: ArtifactStore, tmp_path: Path) -> Worker:
    settings = Settings(home=tmp_path, lease_seconds=2, heartbeat_seconds=0.2, retention_seconds=0.5)
    w = Worker(MemoryJobStore(), artifacts, ROUTING, settings, worker_id="w1")
    w.check_engines()
    return w


def submit(worker: Worker, engine: str = "fixed", **job_fields) -> tuple[Job, str]:
    """A job with a stored input image, as the api makes one; returns it and its image key."""
    prefix = f"inputs/{secrets.token_urlsafe(18)}"
    key = f"{prefix}/image.png"
    worker.artifacts.put_bytes(key, PNG, "image/png")
    spec = GenerationSpec(prompt="cleanup", size=(64, 48), duration=5, image=key)
    job = Job(id=f"job-{time.time_ns()}", owner="o", model="m", engine=engine,
              params={"spec": spec.to_dict(), "inputs_prefix": prefix}, **job_fields)
    worker.store.create(job)
    return job, key


def test_inputs_go_when_a_job_fails_for_good(worker: Worker):
    job, key = submit(worker, "broken")
    assert worker.run_once()
    assert worker.store.get(job.id).status == JobStatus.FAILED
    assert not worker.artifacts.exists(key)


def test_inputs_go_when_a_running_job_is_cancelled(worker: Worker):
    job, key = submit(worker, "slow")
    threading.Timer(0.5, worker.store.cancel, (job.id, "o")).start()
    assert worker.run_once()
    assert worker.store.get(job.id).status == JobStatus.CANCELLED
    assert not worker.artifacts.exists(key)


def test_inputs_and_outputs_go_when_outputs_expire(worker: Worker):
    job, key = submit(worker)
    kept, kept_key = submit(worker, "slow")  # queued: its input stays
    worker.engine_names = ["fixed"]
    worker.check_engines()
    assert worker.run_once()
    done = worker.store.get(job.id)
    assert done.status == JobStatus.COMPLETED and worker.artifacts.exists(key)  # kept for remix until expiry
    assert worker.artifacts.exists(done.outputs["video"])
    time.sleep(0.6)
    assert worker.expire_outputs() == 1
    assert not worker.artifacts.exists(key) and not worker.artifacts.exists(done.outputs["video"])
    assert worker.artifacts.exists(kept_key)


def test_inputs_go_when_the_store_ends_a_lost_workers_job(worker: Worker):
    job, key = submit(worker, max_attempts=1)
    assert worker.store.claim("dead-worker", ["fixed"], lease_seconds=0.05) is not None
    time.sleep(0.1)
    assert worker.store.reclaim_expired() == 1  # what any worker's claim does first
    assert worker.store.get(job.id).status == JobStatus.FAILED
    worker.expire_outputs()
    assert not worker.artifacts.exists(key)
