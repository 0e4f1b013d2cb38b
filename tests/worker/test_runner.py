"""The worker's job path with the in-memory store and the fixed engine (no server)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from clipforge.core.job import Job, JobStatus
from clipforge.core.routing import parse_routing
from clipforge.core.settings import Settings
from clipforge.core.spec import GenerationSpec
from clipforge.jobs.memory import MemoryJobStore
from clipforge.media.probe import decode_audio, decode_frames, probe
from clipforge.storage.local import LocalArtifactStore
from clipforge.worker.loop import Worker

ROUTING = parse_routing({
    "models": {"m": {"engines": ["fixed"]}, "slow": {"engines": ["slow"]}, "bad": {"engines": ["broken"]}},
    "engines": {"fixed": {"steps": 3}, "slow": {"class": "clipforge.engines.fixed:FixedEngine", "steps": 50,
                                                "step_seconds": 0.1},
                "broken": {"class": "clipforge.engines.fixed:FixedEngine", "fail": "weights are corrupt"}},
})


@pytest.fixture
def env(tmp_path: Path):
    store = MemoryJobStore()
    artifacts = LocalArtifactStore(tmp_path / "media")
    settings = Settings(home=tmp_path, lease_seconds=2, heartbeat_seconds=0.5)
    worker = Worker(store, artifacts, ROUTING, settings, worker_id="w1")
    worker.check_engines()
    return store, artifacts, worker


def submit(store, engine: str = "fixed", **spec) -> Job:
    spec.setdefault("prompt", "a test")
    job = Job(id=f"job-{time.time_ns()}", owner="o", model="m", engine=engine,
              params={"spec": GenerationSpec(**spec).to_dict()})
    store.create(job)
    return job


def test_runs_job_to_completion_with_media(env):
    store, artifacts, worker = env
    job = submit(store, size=(64, 48), seed=3)
    assert worker.run_once()
    done = store.get(job.id)
    assert done.status == JobStatus.COMPLETED and done.progress == 100
    video = artifacts.local_path(done.outputs["video"])
    info = probe(video)
    assert (info.video.codec, info.video.width, info.video.height, info.video.frames) == ("h264", 64, 48, 120)
    assert info.video.pix_fmt == "yuv420p"
    assert abs(info.audio.duration - 5.0) <= 1 / 24 and info.audio.sample_rate == 48_000
    assert info.audio.channels == 2
    audio, _ = decode_audio(video)
    assert np.abs(audio).max() > 0.1
    assert artifacts.exists(done.outputs["thumbnail"]) and artifacts.exists(done.outputs["spritesheet"])
    assert done.expires_at and done.expires_at > time.time()


def test_no_audio_means_no_audio_stream(env):
    store, artifacts, worker = env
    job = submit(store, size=(64, 48), generate_audio=False)
    worker.run_once()
    info = probe(artifacts.local_path(store.get(job.id).outputs["video"]))
    assert info.audio is None and info.video.frames == 120


def test_ten_second_clip_has_240_frames(env):
    store, artifacts, worker = env
    job = submit(store, size=(32, 32), duration=10)
    worker.run_once()
    info = probe(artifacts.local_path(store.get(job.id).outputs["video"]))
    assert info.video.frames == 240 and abs(info.format_duration - 10.0) <= 1 / 24


def test_engine_failure_ends_in_failed_with_message(env):
    store, _, worker = env
    job = submit(store, engine="broken", size=(32, 32))
    worker.run_once()
    failed = store.get(job.id)
    assert failed.status == JobStatus.FAILED
    assert failed.error == {"name": "EngineError", "message": "weights are corrupt"}


def test_cancel_running_job_stops_within_a_step(env):
    store, _, worker = env
    job = submit(store, engine="slow", size=(32, 32))
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    deadline = time.time() + 10
    while store.get(job.id).progress < 10 and time.time() < deadline:
        time.sleep(0.05)
    store.cancel(job.id, "o")
    asked = time.time()
    thread.join(10)
    assert time.time() - asked < 0.5 + 0.1 + 0.5  # heartbeat interval + one step + slack
    final = store.get(job.id)
    assert final.status == JobStatus.CANCELLED and final.error["name"] == "Cancelled"
    assert final.progress < 95


def test_first_frame_is_the_input_image(env, tmp_path):
    import io

    from PIL import Image

    from helpers import gradient_image, psnr

    store, artifacts, worker = env
    png = gradient_image(320, 320)
    artifacts.put_bytes("inputs/t/image.png", png, "image/png")
    job = submit(store, image="inputs/t/image.png")
    worker.run_once()
    done = store.get(job.id)
    assert (done.outputs["width"], done.outputs["height"]) == (320, 320)
    first = decode_frames(artifacts.local_path(done.outputs["video"]), [0])[0]
    assert psnr(first, np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))) > 35
