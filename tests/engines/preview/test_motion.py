"""What the picture does: first/last frames survive encoding, motion is real, the camera follows the prompt,
the subject moves against the background (parallax), the tail morph travels, t2v follows colour words."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from clipforge.media.encode import encode_mp4
from clipforge.media.probe import decode_frames
from engines.preview.pictures import generate, landscape, subject_picture


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """How far the content of b moved relative to a (phase correlation), in pixels (dx, dy)."""
    ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float32)
    win = cv2.createHanningWindow(ga.shape[::-1], cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(ga, gb, win)
    return dx, dy


def track(frames: list[np.ndarray], region: tuple[slice, slice], a: int = 0, b: int = 90) -> tuple[float, float]:
    """Content motion in `region` from frame a to b, summed over small steps (robust for large moves)."""
    dx, dy = np.sum([shift(frames[i][region], frames[i + 2][region]) for i in range(a, b, 2)], axis=0)
    return float(dx), float(dy)


ALL = (slice(None), slice(None))
FG = (slice(110, 160), slice(205, 275))  # inside the disc of subject_picture()
BG_L, BG_R = (slice(90, 180), slice(10, 110)), (slice(90, 180), slice(370, 470))


def test_first_and_last_frames_survive_an_encode_round_trip(tmp_path):
    first, tail = landscape(640, 360, seed=1), landscape(640, 360, seed=2)[:, ::-1].copy()
    out, frames = generate("slow push in, waves", image=first, tail=tail, size=(640, 360))
    path = tmp_path / "clip.mp4"
    encode_mp4(path, iter(frames), num_frames=out.num_frames, width=out.width, height=out.height, fps=out.fps,
               audio=out.audio, sample_rate=out.sample_rate)
    decoded = decode_frames(path, [0, out.num_frames - 1])
    assert psnr(decoded[0], first) >= 35
    assert psnr(decoded[1], tail) >= 35


@pytest.mark.parametrize("prompt", ["a photo", "static shot, rain falling", "camera pans right"])
def test_i2v_really_moves(picture, prompt):
    _, frames = generate(prompt, image=picture)
    diffs = [np.abs(frames[i + 1].astype(np.int16) - frames[i]).mean() for i in range(0, 119, 4)]
    assert np.mean(diffs) > 0.15
    assert np.abs(frames[-1].astype(np.int16) - frames[0]).mean() > 3.0


def test_pan_left_and_right_move_opposite_ways():
    img = subject_picture()
    _, left = generate("the camera pans left", image=img)
    _, right = generate("the camera pans right", image=img)
    dl, dr = track(left, ALL)[0], track(right, ALL)[0]
    assert dl > 10 and dr < -10  # panning left moves the content to the right, and vice versa


def test_tilt_up_moves_content_down():
    _, frames = generate("tilt up", image=subject_picture())
    assert track(frames, ALL)[1] > 5


def test_push_in_magnifies_and_pull_out_shrinks():
    img = subject_picture()
    _, push = generate("slow push in", image=img)
    _, pull = generate("pull out to reveal", image=img)
    assert track(push, BG_R, 0, 110)[0] - track(push, BG_L, 0, 110)[0] > 6  # left goes left, right goes right
    assert track(pull, BG_R, 0, 110)[0] - track(pull, BG_L, 0, 110)[0] < -6


def test_parallax_subject_moves_more_than_background():
    _, frames = generate("camera pans right", image=subject_picture())
    fg = track(frames, FG)[0]
    bg = 0.5 * (track(frames, BG_L)[0] + track(frames, BG_R)[0])  # left and right cancel the zoom's spread
    assert fg < 0 and bg < 0
    assert abs(fg) > 1.3 * abs(bg)


def test_no_black_borders_on_any_move(picture):
    for prompt in ("pull out", "orbit around the rock", "handheld", "crane up", "tilt down"):
        _, frames = generate(prompt, image=picture)
        for f in frames[::17]:
            edges = np.concatenate([f[0], f[-1], f[:, 0], f[:, -1]])
            assert (edges.max(axis=1) < 8).mean() < 0.02, prompt


def test_tail_morph_travels_instead_of_dissolving(picture):
    moved = np.roll(picture, 24, axis=1)
    _, frames = generate("static", image=picture, tail=moved)
    mid = frames[60]
    halfway = np.roll(picture, 12, axis=1)
    crossfade = (0.5 * picture + 0.5 * moved).astype(np.uint8)
    core = (slice(20, -20), slice(40, -40))
    assert psnr(mid[core], halfway[core]) > psnr(mid[core], crossfade[core]) + 2


def test_t2v_follows_colour_words_and_moves():
    def mean_rgb(prompt: str) -> np.ndarray:
        _, frames = generate(prompt, audio=False, size=(320, 180))
        assert np.abs(frames[-1].astype(np.int16) - frames[0]).mean() > 1.0  # never a static card
        return np.mean([f.reshape(-1, 3).mean(0) for f in frames[::20]], axis=0)

    red, blue = mean_rgb("a red sunset"), mean_rgb("a blue ocean")
    assert red[0] > red[2] + 30
    assert blue[2] > blue[0] + 30
    green = mean_rgb("abstract green flowing shapes")
    assert green[1] > green[0] and green[1] > green[2]


@pytest.mark.parametrize("size", [(320, 180), (180, 320), (240, 240)])
@pytest.mark.parametrize("prompt", ["city at night", "stars in deep space", "a pine forest"])
def test_t2v_scenes_in_every_aspect_ratio(prompt, size):
    out, frames = generate(prompt, audio=False, size=size)
    assert len(frames) == out.num_frames and frames[0].shape == (size[1], size[0], 3)
    assert np.abs(frames[60].astype(np.int16) - frames[0]).mean() > 0.5
