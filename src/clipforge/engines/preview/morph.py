"""Optical-flow morph from the first picture to the tail picture.

DIS flow is computed both ways once, on a proxy, and upsampled. Frame t warps both pictures towards time t
(Super SloMo's linear flow approximation) and blends them, so shapes travel instead of dissolving. t = 0 is the
first picture exactly and t = 1 the tail exactly.
"""

from __future__ import annotations

import cv2
import numpy as np

FLOW_LONG_SIDE = 640


class FlowMorph:
    def __init__(self, first: np.ndarray, tail: np.ndarray) -> None:
        self.a, self.b = first, tail
        h, w = first.shape[:2]
        s = min(1.0, FLOW_LONG_SIDE / max(h, w))
        pw, ph = max(32, round(w * s)), max(32, round(h * s))
        ga = cv2.cvtColor(cv2.resize(first, (pw, ph), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
        gb = cv2.cvtColor(cv2.resize(tail, (pw, ph), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        f01 = dis.calc(ga, gb, None)
        f10 = dis.calc(gb, ga, None)
        # large motions between unrelated pictures tear; keep the flow to a plausible size
        lim = 0.25 * max(pw, ph)
        f01, f10 = np.clip(f01, -lim, lim), np.clip(f10, -lim, lim)
        sx, sy = w / pw, h / ph
        self.f01 = [cv2.resize(f01[..., k], (w, h), interpolation=cv2.INTER_LINEAR) * f for k, f in ((0, sx), (1, sy))]
        self.f10 = [cv2.resize(f10[..., k], (w, h), interpolation=cv2.INTER_LINEAR) * f for k, f in ((0, sx), (1, sy))]
        self.gx, self.gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))

    def frame(self, t: float) -> np.ndarray:
        """The in-between picture at t in [0, 1]."""
        if t <= 0.0:
            return self.a.copy()
        if t >= 1.0:
            return self.b.copy()
        c00, c01 = -(1 - t) * t, t * t  # F_t->0 = -(1-t)t F01 + t^2 F10
        c10, c11 = (1 - t) ** 2, -t * (1 - t)  # F_t->1 = (1-t)^2 F01 - t(1-t) F10
        maps = []
        for a, b in ((c00, c01), (c10, c11)):
            mx = cv2.addWeighted(self.f01[0], a, self.f10[0], b, 0.0)
            my = cv2.addWeighted(self.f01[1], a, self.f10[1], b, 0.0)
            maps.append((cv2.add(mx, self.gx), cv2.add(my, self.gy)))
        wa = cv2.remap(self.a, maps[0][0], maps[0][1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        wb = cv2.remap(self.b, maps[1][0], maps[1][1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        return cv2.addWeighted(wa, 1.0 - t, wb, t, 0.0)
