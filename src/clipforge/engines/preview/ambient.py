"""Ambient motion the prompt names, confined to plausible regions.

Two kinds:
- source effects displace pixels of the background plate inside a region (water ripples and swells, drifting
  sky, fire flicker), one cv2.remap over the region's bounding box with precomputed displacement fields whose
  phase turns each frame;
- overlays are drawn in screen space after the camera (rain, snow, falling leaves, embers, light sweeps,
  lightning).
Every effect fades in from nothing over the first moments (the first frame stays the input) and, when a tail
frame must land, fades out again before the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from clipforge.engines.preview.camera import smootherstep
from clipforge.engines.preview.events import Timeline


def fbm(rng: np.random.Generator, h: int, w: int, octaves: int = 4, base: int = 4) -> np.ndarray:
    """Fractal value noise in [-1, 1], float32 (h, w)."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        gh, gw = base * 2 ** o, max(2, round(base * 2 ** o * w / max(h, 1)))
        grid = rng.uniform(-1, 1, (gh + 1, gw + 1)).astype(np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    return np.clip(out / total * 1.6, -1, 1)


@dataclass
class _Field:
    """A region of the source canvas with two displacement fields whose phase turns over time."""

    x0: int
    y0: int
    x1: int
    y1: int
    gx: np.ndarray
    gy: np.ndarray
    ax: np.ndarray  # x displacement, cos part
    bx: np.ndarray  # x displacement, sin part
    ay: np.ndarray
    by: np.ndarray
    gain: np.ndarray | None = None  # brightness flicker weight (fire)


def _roi(mask: np.ndarray, thresh: float = 0.05) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask > thresh)
    if len(xs) < 0.002 * mask.size:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


class Ambient:
    def __init__(self, kinds: tuple[str, ...], width: int, height: int, n: int, fps: int, seed: int,
                 timeline: Timeline, *, land: bool = False, regions: dict[str, np.ndarray] | None = None,
                 pad: int = 0, luma: np.ndarray | None = None, tint: tuple[int, int, int] = (255, 236, 200)) -> None:
        self.kinds, self.w, self.h, self.n, self.fps = set(kinds), width, height, n, fps
        self.timeline, self.land, self.pad, self.tint = timeline, land, pad, tint
        self.rng = np.random.default_rng([seed, 0xA3B])
        self.scale = max(width, height) / 1920.0
        self.fields: list[tuple[str, _Field]] = []
        regions = regions or {}
        if "water" in self.kinds:
            m = regions.get("water")
            if m is None or _roi(m) is None:
                m = self._band(0.62, 1.0)  # the prompt says there is water: trust it, low in the frame
            self._water(m)
        if "clouds" in self.kinds and regions.get("sky") is not None and _roi(regions["sky"]) is not None:
            self._sky(regions["sky"])
        if "fire" in self.kinds and regions.get("fire") is not None and _roi(regions["fire"], 0.2) is not None:
            self._fire(regions["fire"])
        self._luma = luma
        self._rain = self._streaks(rain=True) if "rain" in self.kinds else None
        self._snow = self._streaks(rain=False) if "snow" in self.kinds else None
        self._leaves = self._particles(26, leaves=True) if "leaves" in self.kinds else None
        self._embers = self._particles(40, leaves=False) if "fire" in self.kinds else None
        self._bolts = [self._bolt() for _ in timeline.flashes]

    # ---- envelopes -------------------------------------------------------------------------------------
    def envelope(self, i: int) -> float:
        t = i / self.fps
        e = smootherstep(t / 0.6)
        if self.land:
            e *= smootherstep((self.n - 6 - i) / self.fps / 0.6)
        return e

    @property
    def has_source_effects(self) -> bool:
        return bool(self.fields)

    # ---- source-space fields ---------------------------------------------------------------------------
    def _band(self, y0: float, y1: float) -> np.ndarray:
        h, w = 90, 160
        ys = np.linspace(0, 1, h, dtype=np.float32)[:, None]
        m = np.clip((ys - y0) / 0.08, 0, 1) * np.clip((y1 - ys) / 0.02 + 1, 0, 1)
        return np.repeat(m, w, axis=1).astype(np.float32)

    def _full(self, mask: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
        m = cv2.resize(mask.astype(np.float32), (self.w, self.h), interpolation=cv2.INTER_LINEAR)
        box = _roi(m)
        if box is None:
            return None
        x0, y0, x1, y1 = box
        return np.ascontiguousarray(m[y0:y1, x0:x1]), box

    def _grid(self, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        x0, y0, x1, y1 = box
        gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32) + self.pad,
                             np.arange(y0, y1, dtype=np.float32) + self.pad)
        return gx, gy

    def _water(self, mask: np.ndarray) -> None:
        got = self._full(mask)
        if got is None:
            return
        m, box = got
        gx, gy = self._grid(box)
        hh, ww = m.shape
        # perspective: waves are long and tall near the viewer (bottom), fine and flat far away
        p = np.clip((gy - self.pad - box[1]) / max(self.h - box[1], 1), 0, 1)
        lam = self.h * (0.012 + 0.05 * p)
        theta = 2 * np.pi * (gy - self.pad) / lam + 2.5 * fbm(self.rng, hh, ww, 3, 3) + 0.02 * gx
        amp = self.scale * (0.8 + 3.2 * p) * m
        s, c = np.sin(theta).astype(np.float32), np.cos(theta).astype(np.float32)
        n2 = fbm(self.rng, hh, ww, 3, 4) * amp * 0.8
        self.fields.append(("water", _Field(*box, gx, gy, n2 * 0.5, n2 * 0.5, amp * s, -amp * c)))

    def _sky(self, mask: np.ndarray) -> None:
        got = self._full(mask)
        if got is None:
            return
        m, box = got
        gx, gy = self._grid(box)
        hh, ww = m.shape
        wob = 6.0 * self.scale * m
        self.fields.append(("clouds", _Field(*box, gx, gy, fbm(self.rng, hh, ww, 3, 2) * wob,
                                             fbm(self.rng, hh, ww, 3, 2) * wob, fbm(self.rng, hh, ww, 3, 2) * wob * 0.4,
                                             fbm(self.rng, hh, ww, 3, 2) * wob * 0.4, gain=m)))

    def _fire(self, mask: np.ndarray) -> None:
        got = self._full(mask)
        if got is None:
            return
        m, box = got
        x0, y0, x1, y1 = box
        grow = int(0.04 * self.h)  # flames lick above the bright region
        y0 = max(0, y0 - grow)
        m = cv2.resize(mask.astype(np.float32), (self.w, self.h))[y0:y1, x0:x1]
        m = cv2.GaussianBlur(m, (0, 0), 3 * self.scale + 1)
        box = (x0, y0, x1, y1)
        gx, gy = self._grid(box)
        hh, ww = m.shape
        amp = 3.0 * self.scale * m
        self.fields.append(("fire", _Field(*box, gx, gy, fbm(self.rng, hh, ww, 3, 6) * amp * 0.5,
                                           fbm(self.rng, hh, ww, 3, 6) * amp * 0.5, fbm(self.rng, hh, ww, 3, 6) * amp,
                                           fbm(self.rng, hh, ww, 3, 6) * amp, gain=m)))

    def _slice(self, f: _Field) -> tuple[slice, slice]:
        """The field's box in the padded canvas."""
        p = self.pad
        return slice(f.y0 + p, f.y1 + p), slice(f.x0 + p, f.x1 + p)

    def apply_source(self, i: int, src: np.ndarray, work: np.ndarray) -> None:
        """Write frame i's displaced regions of the pristine canvas `src` into `work` (same shape)."""
        e = self.envelope(i)
        t = i / self.fps
        for kind, f in self.fields:
            if kind == "fire":  # `work` still holds last frame's flames there: moving them again would compound
                work[self._slice(f)] = src[self._slice(f)]
        for kind, f in self.fields:
            sl = self._slice(f)
            if e <= 0:
                work[sl] = src[sl]
                continue
            if kind == "water":
                ph = 2 * math.pi * 0.55 * t
                a = e * float(self.timeline.swell(t))
            elif kind == "clouds":
                ph = 2 * math.pi * 0.05 * t
                a = e
            else:
                ph = 2 * math.pi * 2.3 * t + 0.7 * math.sin(2 * math.pi * 3.1 * t)
                a = e
            c, s = math.cos(ph) * a, math.sin(ph) * a
            # water moves up and down only: its x map is the plain grid
            mx = f.gx if kind == "water" else cv2.add(cv2.addWeighted(f.ax, c, f.bx, s, 0.0), f.gx)
            my = cv2.add(cv2.addWeighted(f.ay, c, f.by, s, 0.0), f.gy)
            if kind == "clouds":
                drift = 0.018 * self.w * t / 5.0 * e  # clouds drift sideways, slowly
                mx = cv2.scaleAdd(f.gain, -drift, mx)
            if kind != "fire":  # straight into the canvas: no temporary and no copy
                cv2.remap(src, mx, my, cv2.INTER_LINEAR, dst=work[sl], borderMode=cv2.BORDER_REFLECT_101)
                continue
            # fire moves what the effects before it left (drifting clouds behind the flames), not the pristine
            # canvas: its box would otherwise undo them and leave a seam at its edge
            out = cv2.remap(work, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
            flick = 0.10 * e * (math.sin(2 * math.pi * 7.3 * t) + 0.6 * math.sin(2 * math.pi * 11.9 * t + 1.0))
            work[sl] = np.clip(out * (1.0 + flick * f.gain)[..., None], 0, 255).astype(np.uint8)

    # ---- screen-space overlays -------------------------------------------------------------------------
    def _streaks(self, rain: bool) -> list[tuple[np.ndarray, float, float]]:
        """Two seamless (2H, W + drift, 3) textures (far, near) with their fall speed and sideways drift (px/frame)."""
        layers = []
        for depth in (0.0, 1.0):
            drift = (0.004 if rain else 0.02) * self.w * (0.6 + 0.8 * depth)
            tw, th = self.w + int(abs(drift) * self.n) + 2, self.h
            tex = np.zeros((th, tw), np.uint8)
            area = tw * th / (1920 * 1080)
            if rain:
                count = int((900 if depth == 0 else 260) * area)
                length = self.h * (0.03 if depth == 0 else 0.07)
                xs, ys = self.rng.uniform(0, tw, count), self.rng.uniform(0, th, count)
                bright = self.rng.integers(60, 120 if depth == 0 else 170, count)
                for x, y, b in zip(xs, ys, bright, strict=True):
                    cv2.line(tex, (int(x), int(y)), (int(x - 0.08 * length), int(y + length)), int(b),
                             max(1, int(self.scale * (1 + depth))), cv2.LINE_AA)
                speed = self.h * (0.045 if depth == 0 else 0.09)
            else:
                count = int((700 if depth == 0 else 160) * area)
                xs, ys = self.rng.uniform(0, tw, count), self.rng.uniform(0, th, count)
                r = self.scale * (1.3 if depth == 0 else 3.2)
                for x, y in zip(xs, ys, strict=True):
                    cv2.circle(tex, (int(x), int(y)), max(1, int(r * self.rng.uniform(0.6, 1.3))), 230, -1, cv2.LINE_AA)
                tex = cv2.GaussianBlur(tex, (0, 0), 0.6 + depth * self.scale)
                speed = self.h * (0.004 if depth == 0 else 0.009)
            tex = np.concatenate([tex, tex], axis=0)
            layers.append((np.ascontiguousarray(np.repeat(tex[..., None], 3, axis=2)), speed, drift))
        return layers

    def _particles(self, count: int, leaves: bool) -> np.ndarray:
        r = self.rng
        # x0, y0, speed, sway amplitude, sway freq, phase, size, spin, colour index
        p = np.stack([r.uniform(0, self.w, count), r.uniform(-0.2, 1.0, count) * self.h,
                      r.uniform(0.04, 0.1, count) * self.h, r.uniform(0.01, 0.04, count) * self.w,
                      r.uniform(0.2, 0.6, count), r.uniform(0, 2 * np.pi, count),
                      r.uniform(0.012, 0.024, count) * self.h if leaves else r.uniform(1.0, 2.6, count) * self.scale,
                      r.uniform(-3, 3, count), r.integers(0, 4, count)], axis=1)
        return p

    def _bolt(self) -> np.ndarray:
        x = self.rng.uniform(0.2, 0.8) * self.w
        pts, y = [], 0.0
        while y < 0.55 * self.h:
            pts.append((x, y))
            y += self.rng.uniform(0.02, 0.06) * self.h
            x += self.rng.normal(0, 0.025) * self.w
        return np.array(pts, np.int32)

    def overlay(self, i: int, frame: np.ndarray) -> np.ndarray:
        """Frame i's overlays drawn onto `frame` (uint8 RGB, output size); returns the frame."""
        e = self.envelope(i)
        t = i / self.fps
        if e <= 0:
            return frame
        for tex_layers, darken in ((self._rain, 0.10), (self._snow, 0.0)):
            if tex_layers is None:
                continue
            if darken:
                frame = cv2.convertScaleAbs(frame, alpha=1.0 - darken * e)
            for tex, speed, drift in tex_layers:
                oy = int(self.h - (i * speed) % self.h)
                ox = int(abs(drift) * i)
                sl = tex[oy:oy + self.h, ox:ox + self.w]
                frame = cv2.addWeighted(frame, 1.0, sl, 0.75 * e, 0.0)
        if self._leaves is not None:
            self._draw_particles(frame, self._leaves, t, e, leaves=True)
        if self._embers is not None:
            self._draw_particles(frame, self._embers, t, e, leaves=False)
        if "light" in self.kinds:
            frame = self._sweep(frame, i, e)
        fl = self.timeline.flash(t) * e
        if fl > 0.02:
            frame = cv2.convertScaleAbs(frame, alpha=1.0 + 0.7 * fl, beta=45 * fl)
            for (f0, bolt) in zip(self.timeline.flashes, self._bolts, strict=True):
                if 0 <= t - f0 < 0.2 and len(bolt) > 1:
                    glow = max(2, int(6 * self.scale))
                    cv2.polylines(frame, [bolt], False, (200, 210, 255), glow, cv2.LINE_AA)
                    cv2.polylines(frame, [bolt], False, (255, 255, 255), max(1, glow // 3), cv2.LINE_AA)
        return frame

    def _draw_particles(self, frame: np.ndarray, p: np.ndarray, t: float, e: float, leaves: bool) -> None:
        colours = ([(196, 98, 28), (222, 160, 40), (160, 50, 30), (120, 140, 40)] if leaves
                   else [(255, 170, 60), (255, 120, 30), (255, 210, 120), (255, 140, 40)])
        for x0, y0, sp, sa, sf, ph, size, spin, ci in p:
            if leaves:
                y = (y0 + sp * t) % (1.2 * self.h) - 0.1 * self.h
            else:
                y = self.h - ((self.h - y0 + 1.5 * sp * t) % (1.1 * self.h))
            x = x0 + sa * math.sin(2 * math.pi * sf * t + ph)
            col = tuple(int(c * e + 0.5) for c in colours[int(ci)])
            if leaves:
                ang = math.degrees(spin * t + ph)
                axes = (max(1, int(size)), max(1, int(size * 0.45 * (0.6 + 0.4 * abs(math.sin(spin * t + ph))))))
                if e > 0.99:
                    cv2.ellipse(frame, (int(x), int(y)), axes, ang, 0, 360, col, -1, cv2.LINE_AA)
                else:  # fading in: blend the leaf in
                    cv2.ellipse(frame, (int(x), int(y)), axes, ang, 0, 360,
                                tuple(int(c) for c in col), -1, cv2.LINE_AA)
            else:
                cv2.circle(frame, (int(x), int(y)), max(1, int(size)), col, -1, cv2.LINE_AA)

    def _sweep(self, frame: np.ndarray, i: int, e: float) -> np.ndarray:
        sh, sw = max(8, self.h // 8), max(8, self.w // 8)
        u = i / max(self.n - 1, 1)
        ys, xs = np.mgrid[0:sh, 0:sw].astype(np.float32)
        d = (xs / sw) * 0.8 + (ys / sh) * 0.45 - (-0.3 + 1.6 * u)
        band = np.exp(-(d / 0.12) ** 2) * 0.55 * e
        if self._luma is not None:
            band *= 0.35 + 0.65 * cv2.resize(self._luma, (sw, sh))
        light = (band[..., None] * np.array(self.tint, np.float32)).astype(np.uint8)
        return cv2.add(frame, cv2.resize(light, (self.w, self.h), interpolation=cv2.INTER_LINEAR))
