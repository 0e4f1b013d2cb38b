"""Hosted jobs through the real worker: many at once in one process, re-hosted with stills and meta."""

from __future__ import annotations

import io
import itertools
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from clipforge.core.job import Job, JobStatus
from clipforge.core.routing import parse_routing
from clipforge.core.settings import Settings
from clipforge.core.spec import GenerationSpec
from clipforge.engines.hosted.fal import FalEngine
from clipforge.jobs.memory import MemoryJobStore
from clipforge.media.encode import encode_mp4
from clipforge.media.probe import probe
from clipforge.storage.local import LocalArtifactStore
from clipforge.worker.loop import Worker
from clipforge.worker.runner import JobRunner

T2V = "klingai/video-v2-6-pro-text-to-video"
KEY = "fal-worker-secret"
JOB_SECONDS = 1.0
CONFIG = {"media_hosts": ["*.fal.media"], "poll_seconds": 0.1, "max_poll_seconds": 0.2}
ROUTING = parse_routing({"models": {T2V: {"engines": ["fal"]}}, "engines": {"fal": CONFIG}})


class TimedFal:
    """fal's queue contract (see engines/hosted/hosted_fakes.py), each request COMPLETED after JOB_SECONDS."""

    def __init__(self, video: bytes) -> None:
        self.video, self.started, self.ids = video, {}, itertools.count()
        self.lock = threading.Lock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host.endswith("fal.media"):
            return httpx.Response(200, content=self.video)
        assert request.headers["authorization"] == f"Key {KEY}"
        if request.method == "POST":
            with self.lock:
                rid = f"req-{next(self.ids)}"
                self.started[rid] = time.monotonic()
            base = f"https://queue.fal.run/fal-ai/kling-video/requests/{rid}"
            return httpx.Response(200, json={"request_id": rid, "status_url": f"{base}/status",
                                             "response_url": base, "cancel_url": f"{base}/cancel"})
        rid = request.url.path.split("/")[4]
        if request.url.path.endswith("/status"):
            done = time.monotonic() - self.started[rid] >= JOB_SECONDS
            return httpx.Response(200, json={"status": "COMPLETED" if done else "IN_PROGRESS", "logs": []})
        return httpx.Response(200, json={"video": {"url": f"https://v3.fal.media/files/{rid}.mp4"}})


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    frames = (np.full((90, 160, 3), 10 * i, np.uint8) for i in range(24))
    encode_mp4(path, frames, num_frames=24, width=160, height=90, fps=24, audio=None)
    return path.read_bytes()


def fal_worker(store, tmp_path: Path, handle, settings: Settings | None = None, slots: int = 1) -> Worker:
    """A worker whose fal engine talks to `handle` (a fake of fal's queue API), engines checked."""
    settings = settings or Settings(home=tmp_path, lease_seconds=5, heartbeat_seconds=1)
    artifacts = LocalArtifactStore(tmp_path / "media")
    runner = JobRunner(store, artifacts, ROUTING, settings,
                       lambda name: FalEngine(CONFIG, transport=httpx.MockTransport(handle)))
    worker = Worker(store, artifacts, ROUTING, settings, worker_id="w1", runner=runner, slots=slots)
    worker.check_engines()
    return worker


def test_one_worker_process_runs_many_hosted_jobs_at_once(tmp_path: Path, video: bytes, monkeypatch):
    monkeypatch.setenv("FAL_KEY", KEY)
    fake = TimedFal(video)
    store = MemoryJobStore()
    worker = fal_worker(store, tmp_path, fake.handle, slots=8)
    artifacts = worker.artifacts
    jobs = [Job(id=f"job-{i}", owner="o", model=T2V, engine="fal",
                params={"spec": GenerationSpec(prompt=f"clip {i}").to_dict()}) for i in range(8)]
    for job in jobs:
        store.create(job)
    started = time.monotonic()
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    while any(not store.get(j.id).terminal for j in jobs) and time.monotonic() - started < 30:
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    worker.request_stop(0)
    thread.join(10)
    assert elapsed < 8 * JOB_SECONDS / 2, f"8 one-second hosted jobs took {elapsed:.1f} s with 8 slots"
    for job in jobs:
        done = store.get(job.id)
        assert done.status == JobStatus.COMPLETED, done.error
        assert done.outputs["provider"]["provider_job_id"] == done.params["checkpoint"]["id"]
        assert (done.outputs["width"], done.outputs["height"], done.outputs["has_audio"]) == (160, 90, False)
        assert probe(artifacts.local_path(done.outputs["video"])).video.frames == 24
        thumb = Image.open(io.BytesIO(artifacts.get_bytes(done.outputs["thumbnail"])))
        sheet = Image.open(io.BytesIO(artifacts.get_bytes(done.outputs["spritesheet"])))
        assert thumb.size == (160, 90) and sheet.width > thumb.width
    assert len(fake.started) == 8  # one submit per job


def test_an_undecodable_result_fails_the_job_with_the_engine_named(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("FAL_KEY", KEY)
    fake = TimedFal(b"<html>not a video</html>")
    store = MemoryJobStore()
    worker = fal_worker(store, tmp_path, fake.handle)
    store.create(Job(id="bad", owner="o", model=T2V, engine="fal",
                     params={"spec": GenerationSpec(prompt="x").to_dict()}))
    assert worker.run_once()
    done = store.get("bad")
    assert done.status == JobStatus.FAILED
    assert done.error["message"].startswith("fal: the provider's result is not a playable video")


def test_a_job_queued_for_a_scaled_to_zero_engine_is_checked_against_its_limits_when_it_runs(
        tmp_path: Path, monkeypatch):
    """With no live worker, the api queues for an autoscaled engine without knowing its limits; the
    worker that starts must refuse a tail image Replicate's Kling cannot take, not drop it silently."""
    from clipforge.core.routing import pick_engine
    from clipforge.engines.base import Readiness
    from clipforge.engines.hosted.replicate import ReplicateEngine
    from engines.hosted.hosted_fakes import FakeReplicate
    from helpers import gradient_image

    i2v = "klingai/video-v2-6-pro-image-to-video"
    routing = parse_routing({"models": {i2v: {"engines": ["replicate"]}}, "autoscale": {"engines": ["replicate"]},
                             "engines": {"replicate": {"poll_seconds": 0.01}}})
    asked = {"duration": 5, "generate_audio": True, "image": True, "tail_image": True}
    assert pick_engine(routing.models[i2v], {}, asked, autoscaled=routing.autoscaled) == "replicate"
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_token")
    monkeypatch.setattr(ReplicateEngine, "check_credentials", lambda self: Readiness(True))  # no network
    fake = FakeReplicate("r8_token", b"")
    store, artifacts = MemoryJobStore(), LocalArtifactStore(tmp_path / "media")
    for name in ("image", "tail_image"):
        artifacts.put_bytes(f"inputs/tok/{name}.png", gradient_image(64, 64), "image/png")
    spec = GenerationSpec(prompt="x", image="inputs/tok/image.png", tail_image="inputs/tok/tail_image.png")
    runner = JobRunner(store, artifacts, routing, Settings(home=tmp_path),
                       lambda name: ReplicateEngine({"poll_seconds": 0.01}, transport=fake.transport()))
    worker = Worker(store, artifacts, routing, Settings(home=tmp_path), worker_id="w1", runner=runner)
    worker.check_engines()
    store.create(Job(id="tail", owner="o", model=i2v, engine="replicate",
                     params={"spec": spec.to_dict(), "inputs_prefix": "inputs/tok"}))
    assert worker.run_once()
    done = store.get("tail")
    assert done.status == JobStatus.FAILED
    assert done.error == {"name": "InvalidInput", "message": "tail_image: the engine 'replicate' serving this "
                          "model does not take tail_image; leave it out"}
    assert fake.requests == []  # nothing was submitted upstream
    assert not artifacts.exists("inputs/tok/image.png")


def test_a_seed_sent_while_fal_was_scaled_to_zero_fails_the_job_when_it_runs(tmp_path: Path, video: bytes,
                                                                            monkeypatch):
    """The api records that the seed was given (a random one is always stored); fal's Kling takes no seed,
    so the job fails naming it instead of running without it."""
    from fastapi.testclient import TestClient

    from clipforge.api.app import create_app

    monkeypatch.setenv("FAL_KEY", KEY)
    config = tmp_path / "models.toml"
    config.write_text(f'[models."{T2V}"]\nengines = ["fal"]\n[autoscale]\nengines = ["fal"]\n')
    store = MemoryJobStore()
    settings = Settings(home=tmp_path, api_keys=("k1",), models_config=config)
    with TestClient(create_app(settings, store=store)) as client:
        ids = [client.post("/v2/video/generations", headers={"Authorization": "Bearer k1"},
                           json={"model": T2V, "prompt": "a fox", **extra}).json()["id"]
               for extra in ({"seed": 7}, {})]
    fake = TimedFal(video)
    worker = fal_worker(store, tmp_path, fake.handle, settings)
    assert worker.run_once() and worker.run_once()
    seeded, unseeded = (store.get(i) for i in ids)
    assert seeded.status == JobStatus.FAILED
    assert seeded.error["message"] == "seed: the engine 'fal' serving this model does not take seed; leave it out"
    assert unseeded.status == JobStatus.COMPLETED, unseeded.error
    assert len(fake.started) == 1  # only the unseeded job went upstream


def test_a_provider_failure_holding_nul_ends_the_job_in_postgres(tmp_path: Path, video: bytes, monkeypatch):
    """PostgreSQL refuses NUL in text and jsonb: the provider's message must still fail the job (before,
    the finish raised, and the job stayed running until its lease ran out)."""
    import json
    import uuid

    from helpers import find_postgres

    url, why = find_postgres()
    if url is None:
        pytest.skip(why)
    import psycopg

    from clipforge.jobs.postgres import PostgresJobStore

    class NulFal(TimedFal):
        def handle(self, request: httpx.Request) -> httpx.Response:
            if request.method == "GET" and request.url.path.endswith("/status"):
                return httpx.Response(200, content=json.dumps({"status": "COMPLETED", "logs": []}))
            if request.method == "GET":
                return httpx.Response(422, content=json.dumps({"detail": "face\x00 not found"}))
            return super().handle(request)

    monkeypatch.setenv("FAL_KEY", KEY)
    schema = f"hosted_nul_{uuid.uuid4().hex[:10]}"
    store = PostgresJobStore(url, schema=schema, max_connections=2)
    try:
        worker = fal_worker(store, tmp_path, NulFal(video).handle)
        store.create(Job(id="nul", owner="o", model=T2V, engine="fal",
                         params={"spec": GenerationSpec(prompt="x").to_dict()}))
        assert worker.run_once()
        done = store.get("nul")
        assert done.status == JobStatus.FAILED
        assert done.error["message"] == "fal: face\ufffd not found (HTTP 422)"
    finally:
        store.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_a_seeded_job_does_not_fail_over_to_an_engine_that_takes_no_seed():
    from clipforge.core.errors import EngineUnavailable
    from clipforge.worker.hosted import fail_over

    routing = parse_routing({"models": {T2V: {"engines": ["aiml", "fal"]}}})
    store = MemoryJobStore()
    fal_state = {"ready": True, "limits": {"seed": None}}
    store.register_worker("w1", {"engines": {"aiml": {"ready": True}, "fal": fal_state}})
    for job_id, seed_given in (("seeded", True), ("random-seed", False)):
        store.create(Job(id=job_id, owner="o", model=T2V, engine="aiml",
                         params={"spec": GenerationSpec(prompt="x", seed=7).to_dict(), "seed_given": seed_given}))
    for _ in range(2):
        job = store.claim("w1", ["aiml"], 60)
        target = fail_over(job, "w1", EngineUnavailable("aiml: down"), store, routing)
        assert target == (None if job.id == "seeded" else "fal"), job.id
