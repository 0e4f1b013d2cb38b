"""The OpenAI dialect's clip lengths ("4", "8", "12" seconds) and Sora sizes, rendered by the preview engine
and encoded by the worker: exactly that many frames, that long, that size, audio as long as the video."""

from __future__ import annotations

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
from helpers import gradient_image, psnr

ROUTING = parse_routing({"models": {"m": {"engines": ["preview"]}}, "engines": {}})


@pytest.fixture
def env(tmp_path: Path):
    store, artifacts = MemoryJobStore(), LocalArtifactStore(tmp_path / "media")
    worker = Worker(store, artifacts, ROUTING, Settings(home=tmp_path), worker_id="w1")
    worker.check_engines()
    return store, artifacts, worker


def render(env, **spec) -> Path:
    store, artifacts, worker = env
    job = Job(id=f"job-{time.time_ns()}", owner="o", model="m", engine="preview",
              params={"spec": GenerationSpec(**spec).to_dict()})
    store.create(job)
    assert worker.run_once()
    done = store.get(job.id)
    assert done.status == JobStatus.COMPLETED, done.error
    return artifacts.local_path(done.outputs["video"])


def assert_length(path: Path, seconds: int, size: tuple[int, int], audio: bool = True) -> None:
    info = probe(path)
    assert (info.video.width, info.video.height) == size
    assert info.video.frames == seconds * 24
    assert abs(info.format_duration - seconds) <= 1 / 24
    if audio:
        samples, rate = decode_audio(path)
        assert rate == 48_000 and abs(samples.shape[-1] / rate - seconds) <= 1 / 24
        assert abs(info.audio.duration - info.video.duration) <= 1 / 24


@pytest.mark.parametrize("seconds", [4, 8, 12])
def test_text_to_video_at_the_sdk_lengths(env, seconds: int):
    path = render(env, prompt="ocean waves at dusk, thunder and lightning", duration=seconds, size=(256, 144),
                  seed=seconds)
    assert_length(path, seconds, (256, 144))


def test_image_to_video_with_tail_at_twelve_seconds(env):
    store, artifacts, _ = env
    first, last = gradient_image(320, 192, seed=1), gradient_image(320, 192, seed=2)
    artifacts.put_bytes("inputs/t/image.png", first, "image/png")
    artifacts.put_bytes("inputs/t/tail.png", last, "image/png")
    path = render(env, prompt="slow push in", duration=12, image="inputs/t/image.png", tail_image="inputs/t/tail.png")
    assert_length(path, 12, (320, 192))
    head, tail = decode_frames(path, [0, 12 * 24 - 1])
    from io import BytesIO

    from PIL import Image

    assert psnr(head, np.asarray(Image.open(BytesIO(first)).convert("RGB"))) > 35
    assert psnr(tail, np.asarray(Image.open(BytesIO(last)).convert("RGB"))) > 30


@pytest.mark.parametrize("size", [(720, 1280), (1280, 720), (1024, 1792), (1792, 1024)])
def test_sora_sizes_render_at_exactly_that_size(env, size: tuple[int, int]):
    # one second is enough to show the size is kept (the lengths are checked above); a frame is not blank
    path = render(env, prompt="a lighthouse at dusk", duration=1, size=size)
    assert_length(path, 1, size)
    assert decode_frames(path, [12])[0].std() > 10
