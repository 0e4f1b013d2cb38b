"""Soundscapes (first version: filtered noise bed with a soft chord)."""

from __future__ import annotations

import numpy as np

from clipforge.engines.preview.prompt import Cues

RATE = 48_000


def soundscape(cues: Cues, duration: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    n = int(round(duration * RATE))
    t = np.arange(n, dtype=np.float32) / RATE
    noise = rng.standard_normal((2, n)).astype(np.float32)
    k = np.ones(64, np.float32) / 64
    bed = np.stack([np.convolve(c, k, mode="same") for c in noise])
    chord = sum(np.sin(2 * np.pi * f * t + p) for f, p in zip((220.0, 277.2, 329.6), rng.uniform(0, 6, 3),
                                                                  strict=True))
    out = 0.6 * bed + 0.08 * chord[None, :].astype(np.float32)
    fade = np.minimum(1.0, np.minimum(t / 0.5, (duration - t) / 0.5)).astype(np.float32)
    out *= fade
    rms = float(np.sqrt(np.mean(out ** 2))) or 1.0
    out *= 0.12 / rms
    return np.clip(out, -0.99, 0.99).astype(np.float32)
