"""Image-to-video: the picture split into depth layers, moved by the prompt's camera with parallax, ambient
motion in plausible regions, and an optical-flow morph to the tail picture when there is one."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from clipforge.engines.preview.ambient import Ambient
from clipforge.engines.preview.camera import CameraPath, Pose, affine, ease_in_out, window_pad
from clipforge.engines.preview.depth import build_layers
from clipforge.engines.preview.events import Timeline
from clipforge.engines.preview.morph import FlowMorph
from clipforge.engines.preview.prompt import Cues

BG_GAIN, FG_GAIN = 0.72, 1.32  # how much of the camera move the far plate and the near subject make
HOLD = 4  # frames the tail is held at the end of a morph
WARP = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP


def padded_canvas(image: np.ndarray, pad: int) -> np.ndarray:
    """`image` with `pad` pixels of mirrored surround that blurs out with distance (for pull-outs and shake)."""
    canvas = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    if pad <= 6:
        return canvas
    blurred = cv2.GaussianBlur(canvas, (0, 0), pad / 3.0)
    h, w = canvas.shape[:2]
    dx = np.maximum(np.maximum(pad - np.arange(w), np.arange(w) - (w - 1 - pad)), 0).astype(np.float32)
    dy = np.maximum(np.maximum(pad - np.arange(h), np.arange(h) - (h - 1 - pad)), 0).astype(np.float32)
    d = np.clip(np.maximum(dx[None, :], dy[:, None]) / pad * 1.5, 0, 1)[..., None]
    return (canvas * (1 - d) + blurred * d).astype(np.uint8)


def _roi_matrix(m: np.ndarray, x0: int, y0: int) -> np.ndarray:
    r = m.copy()
    r[:, 2] += m[:, 0] * x0 + m[:, 1] * y0
    return r


def _without(mask: np.ndarray, region: np.ndarray | None) -> np.ndarray:
    """`mask` less `region` (resized to it)."""
    if region is None:
        return mask
    return mask * (1 - cv2.resize(region.astype(np.float32), mask.shape[::-1], interpolation=cv2.INTER_AREA))


def animate_image(first: np.ndarray, tail: np.ndarray | None, cues: Cues, timeline: Timeline, n: int, fps: int,
                  seed: int, subject_parallax: bool = True,
                  fire_region: np.ndarray | None = None,
                  still_region: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Yield `n` frames: frame 0 is `first` exactly, and the last is `tail` exactly when given.

    `subject_parallax=False` moves the picture as one plane (painted scenes: a cut-out of a painted disc or
    tower leaves its glow behind in the plate, which reads as a ghost outline). `fire_region` (0..1, any size)
    is where fire flickers when the caller knows (a painted fire); else bright warm areas are taken.
    `still_region` (0..1, any size) is kept out of the sky's drift (a painted sun)."""
    h, w = first.shape[:2]
    land = tail is not None
    layers = build_layers(first)
    path = CameraPath(cues.camera, w, h, n, speed=cues.speed, seed=seed, land=land, duration_s=n / fps,
                      pivot=layers.pivot if cues.camera in ("push_in", "pull_out") else None)
    pad = window_pad(path)
    luma = cv2.resize(cv2.cvtColor(first, cv2.COLOR_RGB2GRAY), (160, 90)).astype(np.float32) / 255
    ambient = Ambient(cues.ambient, w, h, n, fps, seed, timeline, land=land, pad=pad, luma=luma,
                      regions={"sky": _without(layers.sky, still_region), "water": layers.water,
                               "fire": layers.fire if fire_region is None else fire_region})
    yield first.copy()
    if tail is not None:
        # the morph lands HOLD frames early and the tail is held, so the encoder settles on it
        path = CameraPath(cues.camera, w, h, n - HOLD, speed=cues.speed, seed=seed, land=True, duration_s=n / fps)
        yield from _morph_frames(first, tail, path, pad, ambient, n)
        return
    parallax = subject_parallax and layers.has_subject and cues.camera != "static"
    bg_gain, fg_gain = (BG_GAIN, FG_GAIN) if parallax else (1.0, 1.0)
    if cues.camera == "handheld":
        bg_gain, fg_gain = (0.9, 1.1) if parallax else (1.0, 1.0)
    src = padded_canvas(layers.plate if parallax else first, pad)
    work = src.copy() if ambient.has_source_effects else src
    if parallax:
        fg = padded_canvas(first, pad)
        alpha = cv2.copyMakeBorder(layers.alpha, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        bx0, by0, bx1, by1 = layers.box
        corners = np.array([[bx0, by0], [bx1, by0], [bx0, by1], [bx1, by1]], np.float64) + pad
    pivot = path.pivot
    for i in range(1, n):
        pose = path.pose(i)
        ambient.apply_source(i, src, work)
        m_bg = affine(pose.scaled(bg_gain), w, h, pivot, pad)
        frame = cv2.warpAffine(work, m_bg, (w, h), flags=WARP, borderMode=cv2.BORDER_REFLECT_101)
        if parallax:
            m_fg = affine(pose.scaled(fg_gain), w, h, pivot, pad)
            inv = cv2.invertAffineTransform(m_fg)
            pts = corners @ inv[:, :2].T + inv[:, 2]
            x0, y0 = max(0, int(np.floor(pts[:, 0].min())) - 2), max(0, int(np.floor(pts[:, 1].min())) - 2)
            x1, y1 = min(w, int(np.ceil(pts[:, 0].max())) + 2), min(h, int(np.ceil(pts[:, 1].max())) + 2)
            if x1 > x0 and y1 > y0:
                mr = _roi_matrix(m_fg, x0, y0)
                size = (x1 - x0, y1 - y0)
                fg_roi = cv2.warpAffine(fg, mr, size, flags=WARP, borderMode=cv2.BORDER_REFLECT_101)
                a = cv2.warpAffine(alpha, mr, size, flags=WARP, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                roi = frame[y0:y1, x0:x1]
                frame[y0:y1, x0:x1] = cv2.blendLinear(fg_roi, roi, a, 1.0 - a)
        yield ambient.overlay(i, frame)


def _morph_frames(first: np.ndarray, tail: np.ndarray, path: CameraPath, pad: int, ambient: Ambient,
                  n: int) -> Iterator[np.ndarray]:
    h, w = first.shape[:2]
    morph = FlowMorph(first, tail)
    last = n - HOLD
    for i in range(1, last - 1):
        t = ease_in_out(i / (last - 1))
        frame = morph.frame(t)
        pose = path.pose(i)
        if pose != Pose():
            mat = affine(pose, w, h, path.pivot, 0)
            frame = cv2.warpAffine(frame, mat, (w, h), flags=WARP, borderMode=cv2.BORDER_REFLECT_101)
        yield ambient.overlay(i, frame)
    for _ in range(max(last - 1, 1), n):
        yield tail.copy()
