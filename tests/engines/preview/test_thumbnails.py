"""Thumbnails show the clip: not a white lightning flash, not a ghosted in-between of a morph."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipforge.worker.runner import encode_output
from engines.preview.pictures import generate, landscape, subject_picture
from helpers import psnr

STORM = "a lighthouse on a rock by the sea, camera pans left, thunder and lightning"


def thumbnail(tmp_path: Path, prompt: str, seed: int, **kw: object) -> tuple[np.ndarray, list[np.ndarray]]:
    """The thumbnail the worker's encode keeps for this clip, and the clip's frames."""
    out, frames = generate(prompt, seed=seed, audio=False, **kw)
    out.frames = iter(frames)
    result = encode_output(out, tmp_path / "clip.mp4")
    return result.thumbnail, frames


def luma(frame: np.ndarray) -> float:
    return float(frame.astype(np.float32).mean())


def test_a_lightning_clip_is_not_shown_by_its_flash(tmp_path: Path):
    # seed 13 strikes at 2.4 s: the middle frame (2.5 s) is lit by the flash
    thumb, frames = thumbnail(tmp_path, STORM, 13)
    levels = np.array([luma(f) for f in frames])
    calm = np.median(levels)
    assert levels[len(frames) // 2] > calm + 15  # what the middle frame would have shown
    assert abs(luma(thumb) - calm) < 5, (luma(thumb), calm)
    nearest = min(range(len(frames)), key=lambda i: float(np.abs(frames[i].astype(np.int16) - thumb).mean()))
    assert abs(nearest - len(frames) // 2) <= 24  # still from the middle of the clip, a second at most away


def test_a_morph_is_shown_by_its_first_frame_not_a_ghost(tmp_path: Path):
    first, tail = landscape(), subject_picture(seed=3)
    thumb, frames = thumbnail(tmp_path, "slow push in", 1, image=first, tail=tail)
    middle = frames[len(frames) // 2]
    assert psnr(middle, first) < 25 and psnr(middle, tail) < 25  # the in-between is neither picture
    assert psnr(thumb, first) >= 35, psnr(thumb, first)


def test_other_clips_keep_the_middle_frame(tmp_path: Path):
    thumb, frames = thumbnail(tmp_path, "slow push in", 2, image=landscape())
    assert np.array_equal(thumb, frames[len(frames) // 2])
