"""Procedural text-to-video scenes (first version: a drifting sky)."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from clipforge.engines.preview.prompt import Cues


def _noise(rng: np.random.Generator, h: int, w: int, octaves: int = 5) -> np.ndarray:
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        gh, gw = max(2, h >> (octaves - o)), max(2, w >> (octaves - o))
        out += amp * cv2.resize(rng.random((gh, gw), dtype=np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    return out / total


def render_scene(cues: Cues, width: int, height: int, n: int, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    top = np.array(cues.colours[0] if cues.colours else (60, 120, 220), np.float32)
    bottom = np.array(cues.colours[1] if len(cues.colours) > 1 else (250, 200, 150), np.float32)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    sky = (top * (1 - y) + bottom * y) * np.ones((1, width, 1), np.float32)
    nw = width + width // 2
    clouds = _noise(rng, height, nw)
    clouds = np.clip((clouds - 0.45) * 3.0, 0, 1)
    for i in range(n):
        shift = i * width * 0.25 / max(n, 1)
        m = np.float32([[1, 0, shift], [0, 1, 0]])
        c = cv2.warpAffine(clouds, m, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)[..., None]
        yield np.clip(sky * (1 - 0.7 * c) + 245 * 0.7 * c, 0, 255).astype(np.uint8)
