"""The ltx2 engine end to end through the worker: job -> tiny LTX-2 -> H.264 + AAC MP4 in storage."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="the ltx2 engine needs the models extra")
pytest.importorskip("diffusers", reason="the ltx2 engine needs the models extra")
from PIL import Image

from clipforge.core.job import Job, JobStatus
from clipforge.core.routing import parse_routing
from clipforge.core.settings import Settings
from clipforge.core.spec import GenerationSpec
from clipforge.engines.ltx2_tiny import tiny_engine_config
from clipforge.jobs.memory import MemoryJobStore
from clipforge.media.probe import decode_audio, probe
from clipforge.storage.local import LocalArtifactStore
from clipforge.worker.loop import Worker


def make_worker(tmp_path: Path, ltx2_config: dict) -> tuple[MemoryJobStore, LocalArtifactStore, Worker]:
    routing = parse_routing({"models": {"ltx-2": {"engines": ["ltx2"]}}, "engines": {"ltx2": ltx2_config}})
    store = MemoryJobStore()
    artifacts = LocalArtifactStore(tmp_path / "media")
    settings = Settings(home=tmp_path, lease_seconds=2, heartbeat_seconds=0.5)
    worker = Worker(store, artifacts, routing, settings, worker_id="w-ltx2")
    worker.check_engines()
    return store, artifacts, worker


@pytest.fixture(scope="module")
def env(tiny_ltx2: Path, tmp_path_factory: pytest.TempPathFactory):
    store, artifacts, worker = make_worker(tmp_path_factory.mktemp("worker"),
                                           tiny_engine_config(tiny_ltx2, two_stage=True, guidance="cheap"))
    yield store, artifacts, worker
    worker.runner.unload()


def submit(store: MemoryJobStore, **spec) -> Job:
    spec.setdefault("prompt", "waves on the ocean at sunset, wind")
    job = Job(id=f"job-{time.time_ns()}", owner="o", model="ltx-2", engine="ltx2",
              params={"spec": GenerationSpec(**spec).to_dict()})
    store.create(job)
    return job


def put_image(artifacts: LocalArtifactStore, key: str, width: int, height: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buf, format="PNG")
    artifacts.put_bytes(key, buf.getvalue(), "image/png")
    return key


@pytest.mark.parametrize("mode", ["t2v", "i2v", "flf"])
def test_job_gives_mp4_with_model_audio(env, mode):
    store, artifacts, worker = env
    assert worker.readiness["ltx2"].ready
    spec: dict = {"seed": 4}
    if mode == "t2v":
        spec["size"] = (64, 36)
        size = (64, 36)
    else:
        spec["image"] = put_image(artifacts, f"inputs/{mode}/image.png", 96, 64, 1)
        size = (96, 64)
    if mode == "flf":
        spec["tail_image"] = put_image(artifacts, "inputs/flf/tail.png", 96, 64, 2)
    job = submit(store, **spec)
    assert worker.run_once()
    done = store.get(job.id)
    assert done.status == JobStatus.COMPLETED, done.error
    assert done.progress == 100 and done.outputs["has_audio"] and done.outputs["engine"] == "ltx2"
    info = probe(artifacts.local_path(done.outputs["video"]))
    assert (info.video.codec, info.video.width, info.video.height, info.video.frames) == ("h264", *size, 120)
    assert abs(info.format_duration - 5.0) <= 0.05
    assert (info.audio.sample_rate, info.audio.channels) == (48_000, 2)
    assert abs(info.audio.duration - 5.0) <= 0.05
    audio, _ = decode_audio(artifacts.local_path(done.outputs["video"]))
    assert np.abs(audio).max() > 0.01  # the vocoder's sound, resampled 24 -> 48 kHz


def test_no_audio_job_has_no_audio_stream(env):
    store, artifacts, worker = env
    job = submit(store, size=(64, 64), generate_audio=False)
    worker.run_once()
    done = store.get(job.id)
    assert done.status == JobStatus.COMPLETED and not done.outputs["has_audio"]
    info = probe(artifacts.local_path(done.outputs["video"]))
    assert info.audio is None and info.video.frames == 120


def test_cancel_mid_run_ends_the_job_within_a_step(tiny_ltx2, tmp_path):
    store, _, worker = make_worker(tmp_path, tiny_engine_config(tiny_ltx2, two_stage=False, steps=60,
                                                                guidance="cheap"))  # one forward per step
    engine = worker.runner.engine("ltx2")
    transformer = engine._pipes["t2v"].transformer
    forwards = [0]

    def slow_step(module, args, kwargs):  # make each denoising step take a measurable time
        forwards[0] += 1
        time.sleep(0.03)

    handle = transformer.register_forward_pre_hook(slow_step, with_kwargs=True)
    try:
        job = submit(store, size=(64, 64))
        thread = threading.Thread(target=worker.run_once)
        thread.start()
        deadline = time.time() + 20
        while store.get(job.id).progress < 10 and time.time() < deadline:
            time.sleep(0.02)
        store.cancel(job.id, "o")
        asked = time.time()
        thread.join(20)
        elapsed = time.time() - asked
    finally:
        handle.remove()
        worker.runner.unload()
    final = store.get(job.id)
    assert final.status == JobStatus.CANCELLED and final.error["name"] == "Cancelled"
    steps_done = engine._progress[0]
    assert forwards[0] == steps_done < 60  # the step whose callback saw the cancel was the last one run
    assert elapsed < 0.5 + 0.3 + 1.0  # heartbeat interval + one step + slack
    assert final.progress < 95


def test_missing_weights_make_the_model_not_ready(tmp_path):
    missing = tmp_path / "ltx2-weights"
    _, _, worker = make_worker(tmp_path, {"path": str(missing)})
    ready = worker.readiness["ltx2"]
    assert not ready.ready and str(missing) in ready.reason
    assert worker.ready_engines == []


def test_cuda_oom_fails_the_job_as_out_of_memory_and_the_worker_takes_the_next(env, monkeypatch):
    import torch

    store, artifacts, worker = env
    emptied: list[int] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(1))
    transformer = worker.runner.engine("ltx2")._pipes["t2v"].transformer
    raised: list[int] = []

    def oom_once(module, args):
        if not raised:
            raised.append(1)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 12.00 GiB")

    handle = transformer.register_forward_pre_hook(oom_once)
    try:
        failed, next_job = submit(store, size=(64, 64), seed=1), submit(store, size=(64, 64), seed=2)
        assert worker.run_once() and worker.run_once()
    finally:
        handle.remove()
    done = store.get(failed.id)
    assert done.status == JobStatus.FAILED and done.error["name"] == "OutOfMemory"
    assert "offload" in done.error["message"] and "12.00 GiB" in done.error["message"]
    assert len(emptied) >= 2  # by the engine as the error left it, and by the worker after the job
    assert store.get(next_job.id).status == JobStatus.COMPLETED

