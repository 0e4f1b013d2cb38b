"""One timeline of visual events per clip, shared by the picture and the sound so they stay in sync:
wave swells, lightning flashes (thunder follows), wind gusts."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from clipforge.engines.preview.prompt import Cues


@dataclass(frozen=True)
class Timeline:
    duration: float
    swell_period: float  # seconds per wave swell
    swell_phase: float
    flashes: tuple[float, ...]  # lightning flash times (s)
    thunder_delays: tuple[float, ...]  # seconds from each flash to its thunder
    gusts: tuple[float, ...]  # wind gust peak times (s)

    def swell(self, t: np.ndarray | float) -> np.ndarray | float:
        """Wave height envelope 0.25..1 at time(s) t; the picture's wave amplitude and the surf's loudness."""
        return 0.625 + 0.375 * np.sin(2 * math.pi * np.asarray(t) / self.swell_period + self.swell_phase)

    def flash(self, t: float) -> float:
        """Lightning brightness 0..1 at time t: a bright strike, a flicker, a decay."""
        out = 0.0
        for f in self.flashes:
            d = t - f
            if 0 <= d < 0.6:
                out = max(out, math.exp(-d / 0.07) + 0.6 * math.exp(-abs(d - 0.13) / 0.03) * (d > 0.09))
        return min(out, 1.0)


def make_timeline(cues: Cues, duration: float, seed: int, land: bool = False) -> Timeline:
    rng = np.random.default_rng([seed, 0x7E1])
    period = float(rng.uniform(3.2, 4.6))
    phase = float(rng.uniform(-0.5, 0.5)) - math.pi / 2  # starts near a trough and rises
    flashes: list[float] = []
    if "lightning" in cues.ambient:
        k = 1 if duration <= 5.5 else 2
        end = duration - (1.6 if land else 1.2)
        starts = np.sort(rng.uniform(0.9, max(1.0, end), size=k))
        flashes = [float(s) for s in starts]
    delays = tuple(float(rng.uniform(0.35, 1.1)) for _ in flashes)
    gusts = tuple(float(g) for g in np.sort(rng.uniform(0.5, duration - 0.5, size=max(1, int(duration / 3)))))
    return Timeline(float(duration), period, phase, tuple(flashes), delays, gusts)
