"""The preview engine's contract: frame count and shape, first frame, determinism, audio switch, cancel."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from clipforge.core.errors import Cancelled
from clipforge.core.spec import GenerationSpec
from clipforge.engines.base import EngineRequest
from clipforge.engines.preview import PreviewEngine

W, H = 320, 180


def photo(seed: int = 0, w: int = W, h: int = H) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([128 + 90 * np.sin(x / 17 + seed), 128 + 90 * np.cos(y / 11), 100 + 60 * np.sin((x + y) / 23)], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))


def run(prompt: str, seed: int = 0, image: Image.Image | None = None, tail: Image.Image | None = None,
        audio: bool = True, w: int = W, h: int = H):
    spec = GenerationSpec(prompt=prompt, seed=seed, generate_audio=audio, image="in" if image else None)
    out = PreviewEngine().generate(EngineRequest(spec, w, h, image=image, tail_image=tail))
    return out, list(out.frames)


def test_i2v_frames_first_frame_and_audio():
    img = photo()
    out, frames = run("a calm lake", image=img)
    assert out.num_frames == len(frames) == 120
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in frames)
    assert np.array_equal(frames[0], np.asarray(img))
    assert out.audio is not None and out.audio.shape[0] == 2 and out.audio.dtype == np.float32
    assert np.sqrt(np.mean(out.audio ** 2)) > 0.01


def test_no_audio_when_not_asked():
    out, _ = run("sunset", audio=False)
    assert out.audio is None


def test_same_seed_same_bytes_other_seed_differs():
    a, fa = run("ocean waves at sunset", seed=7)
    b, fb = run("ocean waves at sunset", seed=7)
    c, fc = run("ocean waves at sunset", seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(fa, fb, strict=True))
    assert np.array_equal(a.audio, b.audio)
    assert not all(np.array_equal(x, y) for x, y in zip(fa, fc, strict=True))
    assert not np.array_equal(a.audio, c.audio)


def test_frames_are_lazy_and_cancel_propagates():
    spec = GenerationSpec(prompt="pan left", image="in")
    calls = []

    def on_step(i: int, n: int, stage: str) -> None:
        calls.append((i, n, stage))
        if i == 3:
            raise Cancelled("stop")

    out = PreviewEngine().generate(EngineRequest(spec, W, H, image=photo()), on_step)
    assert calls == []  # nothing rendered until the frames are pulled
    with pytest.raises(Cancelled):
        list(out.frames)
    assert calls == [(1, 120, "rendering"), (2, 120, "rendering"), (3, 120, "rendering")]
