"""Text-to-video scenes: a procedural picture chosen and coloured by the prompt (sky/sunset, ocean, forest, city
at night, space, abstract), then animated like an input image (camera move, parallax, ambient motion). Abstract
scenes are a domain-warped fBm field that flows every frame. Every aspect ratio: sizes scale with the frame."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import NamedTuple

import cv2
import numpy as np

from clipforge.engines.preview.ambient import fbm
from clipforge.engines.preview.animate import animate_image
from clipforge.engines.preview.camera import ease_in_out
from clipforge.engines.preview.events import Timeline
from clipforge.engines.preview.prompt import Cues

DEFAULT_CAMERA = {"sky": "pan_right", "ocean": "pan_right", "forest": "push_in", "city": "pan_left",
                  "space": "push_in", "abstract": "push_in"}
SCENE_AMBIENT = {"sky": ("clouds",), "ocean": ("water", "clouds"), "forest": ("light",), "city": (), "space": (),
                 "abstract": ()}


def _c(rgb: tuple[int, int, int] | np.ndarray) -> np.ndarray:
    return np.asarray(rgb, np.float32)


def _mix(a: np.ndarray, b: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    return a * (1 - t) + b * t


def _vgrad(h: int, w: int, top: np.ndarray, bottom: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    y = (np.linspace(0, 1, h, dtype=np.float32) ** gamma)[:, None, None]
    return np.broadcast_to(_mix(top, bottom, y), (h, w, 3)).copy()


def _sky(h: int, w: int, cues: Cues, rng: np.random.Generator, sunset: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The painted sky, and where its sun is (0..1, fading out well beyond the disc) when it has one: drifting
    clouds must leave the sun whole, or its disc shears where the drift starts."""
    if cues.overcast:
        return _storm_sky(h, w, cues.night, rng), None
    cols = [np.asarray(c, np.float32) for c in cues.colours]
    if sunset:
        top, low = _c((70, 40, 110)), _c((250, 140, 60))
    elif cues.night:
        top, low = _c((8, 10, 30)), _c((30, 40, 80))
    else:
        top, low = _c((40, 100, 210)), _c((170, 205, 240))
    if cols:
        top = _mix(top, cols[0] * (0.45 if cues.night else 0.8), 0.75)
        low = _mix(low, cols[1] if len(cols) > 1 else np.minimum(cols[0] * 1.25 + 40, 255), 0.7)
    sky = _vgrad(h, w, top, low, 0.8)
    clouds = np.clip((fbm(rng, h, w, 5, 3) * 0.5 + 0.5 - 0.5) * 2.6, 0, 1)[..., None]
    clouds *= (1 - np.linspace(0, 1, h, dtype=np.float32)[:, None, None] * 0.6)
    tint = _mix(_c((255, 255, 255)), low, 0.5 if sunset or cues.night else 0.15) * (0.35 if cues.night else 1.0)
    sky = _mix(sky, tint, clouds * 0.85)
    if sunset or not cues.night:
        cx, cy, r = w * rng.uniform(0.3, 0.7), h * (0.42 if sunset else 0.2), 0.05 * min(w, h)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        d = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
        glow = np.exp(-d / (r * (4 if sunset else 3)))[..., None] * (0.6 if sunset else 0.35)
        sun = (d < r).astype(np.float32)[..., None]
        sky = _mix(sky, _c((255, 220, 150) if sunset else (255, 250, 235)), np.clip(glow + sun, 0, 1))
        # still out to 1.5 radii, then a ramp wide enough that the clouds' drift never folds pixels over
        return sky, np.clip((5.0 - d / r) / 3.5, 0, 1)
    return sky, None


def _storm_sky(h: int, w: int, night: bool, rng: np.random.Generator) -> np.ndarray:
    """A low grey sky of heavy clouds, darkest overhead; no sun, moon or stars (so lightning reads)."""
    top, low = (_c((14, 16, 22)), _c((40, 44, 54))) if night else (_c((52, 56, 66)), _c((112, 118, 128)))
    sky = _vgrad(h, w, top, low, 0.7)
    clouds = np.clip(fbm(rng, h, w, 5, 3) * 0.5 + 0.5, 0, 1)[..., None]
    return sky * (0.7 + 0.45 * clouds)


def campfire(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Paint a campfire on a patch of dark ground at the bottom centre of `img` (float RGB, in place): logs, a
    flame whose colours run from a white-yellow core to red tips, and the warm light it casts around it.
    Returns the flame's mask (0..1): the region ambient motion flickers."""
    h, w = img.shape[:2]
    s = min(w, h)
    cx, base = w * rng.uniform(0.42, 0.58), h * 0.86
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ground = ((xs - cx) / (0.55 * w)) ** 2 + ((ys - h * 1.02) / (0.2 * h)) ** 2 < 1
    img[ground] = img[ground] * 0.25 + _c((34, 24, 18)) * 0.75
    glow = np.exp(-(((xs - cx) / (0.32 * s)) ** 2 + ((ys - base + 0.05 * s) / (0.26 * s)) ** 2))[..., None]
    img += glow * _c((255, 120, 40)) * 0.55
    for angle in (-18.0, 18.0, 0.0):
        rect = ((float(cx), float(base + 0.012 * s)), (float(0.2 * s), float(0.03 * s)), angle)
        cv2.fillPoly(img, [cv2.boxPoints(rect).astype(np.int32)], (70, 40, 22), cv2.LINE_AA)
    heat = np.zeros((h, w), np.float32)
    for _ in range(7):
        tx = cx + rng.normal(0, 0.035 * s)
        tall, half = rng.uniform(0.16, 0.3) * s, rng.uniform(0.025, 0.045) * s
        v = np.clip((base - ys) / tall, 0, 1.2)  # 0 at the base, 1 at the tongue's tip
        width = half * np.clip(1 - v, 0, 1) ** 0.6 * (1 + 0.6 * np.sin(np.pi * np.clip(v, 0, 1)))
        inside = np.clip(1 - np.abs(xs - tx) / np.maximum(width, 1e-3), 0, 1) * (ys <= base) * (v < 1)
        heat = np.maximum(heat, inside * (1 - 0.75 * v))
    heat = cv2.GaussianBlur(heat, (0, 0), max(1.0, 0.004 * s))
    stops = np.array([[150, 20, 5], [235, 80, 15], [255, 160, 40], [255, 225, 120], [255, 250, 220]], np.float32)
    idx = np.clip(heat * (len(stops) - 1), 0, len(stops) - 1.001)
    k = idx.astype(np.int32)
    colour = stops[k] + (stops[k + 1] - stops[k]) * (idx - k)[..., None]
    alpha = np.clip(heat / 0.12, 0, 1)[..., None]
    img[:] = img * (1 - alpha) + colour * alpha
    return alpha[..., 0]


def _ridge(w: int, base: float, amp: float, rng: np.random.Generator, rough: int = 6) -> np.ndarray:
    x = np.linspace(0, 1, w, dtype=np.float32)
    y = np.zeros(w, np.float32)
    for k in range(1, rough + 1):
        y += np.sin(2 * np.pi * (k * 0.7 + rng.uniform(0, 1)) * x * k + rng.uniform(0, 6)) / k ** 1.3
    return base - amp * y / 2.0


def _fill_below(img: np.ndarray, top: np.ndarray, colour: np.ndarray, shade: float = 0.25) -> None:
    h = img.shape[0]
    ys = np.arange(h, dtype=np.float32)[:, None]
    m = (ys >= top[None, :] * h)
    depth = np.clip((ys - top[None, :] * h) / (0.4 * h), 0, 1)
    col = colour[None, None, :] * (1 - shade * depth[..., None])
    img[m] = col[m]


def paint(cues: Cues, w: int, h: int, seed: int) -> np.ndarray:
    """The still picture of the prompt's scene (uint8 RGB)."""
    return paint_scene(cues, w, h, seed)[0]


class Painted(NamedTuple):
    """A painted scene: the picture (uint8 RGB), and masks (0..1, its size) of its fire and its sun, if any."""

    image: np.ndarray
    fire: np.ndarray | None
    sun: np.ndarray | None


def paint_scene(cues: Cues, w: int, h: int, seed: int) -> Painted:
    """The still picture of the prompt's scene and the regions ambient motion treats apart."""
    fire = sun = None
    rng = np.random.default_rng([seed, 0x5CE])
    cols = [np.asarray(c, np.float32) for c in cues.colours]
    scene = cues.scene
    sunset = not cues.overcast and (cues.sunset or (not cues.night and any(c[0] > c[2] + 40 for c in cols[:1])))
    if scene == "space":
        img = np.zeros((h, w, 3), np.float32) + _c((4, 5, 14))
        neb = np.clip(fbm(rng, h, w, 5, 2) * 0.5 + 0.5, 0, 1) ** 2.2
        neb2 = np.clip(fbm(rng, h, w, 5, 3) * 0.5 + 0.5, 0, 1) ** 3
        c1 = cols[0] if cols else _c((120, 60, 200))
        c2 = cols[1] if len(cols) > 1 else _c((40, 140, 220))
        img += neb[..., None] * c1 * 0.9 + neb2[..., None] * c2 * 0.8
        for count, size in ((int(1500 * w * h / 2e6), 1), (int(200 * w * h / 2e6), 2)):
            xs, ys = rng.integers(0, w, count), rng.integers(0, h, count)
            b = rng.uniform(120, 255, count)
            rad = max(1, int(size * max(w, h) / 1920))
            for x, y, v in zip(xs, ys, b, strict=True):
                cv2.circle(img, (int(x), int(y)), rad, (float(v),) * 3, -1, cv2.LINE_AA)
        r = 0.16 * min(w, h)
        cx, cy = w * rng.uniform(0.3, 0.7), h * rng.uniform(0.35, 0.65)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        d = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2) / r
        planet = (d < 1).astype(np.float32)
        shade = np.clip(1.1 - ((xs - cx + 0.5 * r) ** 2 + (ys - cy + 0.5 * r) ** 2) ** 0.5 / (1.6 * r), 0.05, 1)
        bands = 0.75 + 0.25 * np.sin((ys - cy) / r * 9 + 2 * fbm(rng, h, w, 3, 4))
        pc = (c2 * 0.6 + _c((200, 170, 130)) * 0.4)
        img = _mix(img, pc * (bands * shade)[..., None], planet[..., None])
        img += (np.exp(-np.abs(d - 1) * 12) * (d > 1))[..., None] * c2 * 0.5
    elif scene == "abstract":
        img = np.zeros((h, w, 3), np.float32)  # animated separately
    else:
        night = cues.night or scene == "city"
        img, sun = _sky(h, w, dataclasses.replace(cues, night=night), rng, sunset and not night)
        if night and not cues.overcast:
            xs, ys = rng.integers(0, w, int(300 * w * h / 2e6)), rng.integers(0, int(0.5 * h), int(300 * w * h / 2e6))
            for x, y in zip(xs, ys, strict=True):
                cv2.circle(img, (int(x), int(y)), 1, (230, 230, 255), -1, cv2.LINE_AA)
        if scene == "ocean":
            hz = 0.5
            sea_c = cols[0] if cols and not sunset else _c((34, 48, 62) if cues.overcast else (20, 70, 130))
            sea = _vgrad(h - int(hz * h), w, sea_c * 0.9 + 15, sea_c * 0.45)
            ripple = fbm(rng, sea.shape[0], w, 5, 6)
            sea *= (0.85 + 0.2 * ripple)[..., None]
            # the sky's glow mirrored in the water
            refl = img[:int(hz * h)][::-1][:sea.shape[0]]
            sea = _mix(sea, refl, 0.25)
            img[int(hz * h):] = sea[:h - int(hz * h)]
        elif scene == "forest":
            hills = _c((90, 120, 150))
            _fill_below(img, _ridge(w, 0.55, 0.08, rng), hills, 0.2)
            green = cols[0] if cols else _c((40, 110, 50))
            for layer, (base, dark) in enumerate(((0.62, 0.75), (0.72, 0.5), (0.85, 0.3))):
                top = np.full(w, 2.0, np.float32)
                x = 0
                while x < w:
                    tw = rng.uniform(0.03, 0.07) * w * (1 + 0.5 * layer)
                    th = rng.uniform(0.15, 0.3) * h * (1 + 0.4 * layer)
                    xs = np.arange(int(x), min(w, int(x + tw)))
                    cone = base - (th / h) * (1 - np.abs((xs - x - tw / 2) / (tw / 2)))
                    top[xs] = np.minimum(top[xs], cone)
                    x += tw * rng.uniform(0.5, 0.9)
                top = np.minimum(top, base + 0.02)
                _fill_below(img, top, green * dark + _c((10, 15, 10)) * (1 - dark), 0.3)
            _fill_below(img, np.full(w, 0.93, np.float32), green * 0.25, 0.1)
        elif scene == "city":
            neon = cols if cols else [_c((255, 60, 180)), _c((40, 220, 255))]
            for layer, (base, dark) in enumerate(((0.5, 0.22), (0.62, 0.12), (0.75, 0.06))):
                x = 0
                while x < w:
                    bw = rng.uniform(0.04, 0.1) * w * (1 + 0.4 * layer)
                    bh = rng.uniform(0.12, 0.38) * h * (1 + 0.3 * layer)
                    x0, x1, y0 = int(x), int(min(w, x + bw)), int(base * h - bh + layer * 0.1 * h)
                    y0 = max(0, y0)
                    body = _c((30, 35, 60)) * (dark * 3)
                    img[y0:, x0:x1] = body
                    step = max(3, int(0.012 * max(w, h)))
                    for wy in range(y0 + step, h - step, step * 2):
                        for wx in range(x0 + step // 2, x1 - step, step * 2):
                            if rng.random() < 0.45:
                                c = _c((255, 210, 120)) if rng.random() < 0.8 else neon[int(rng.integers(len(neon)))]
                                img[wy:wy + step, wx:wx + max(1, step // 1)] = c * (0.5 + 0.5 * dark * 4)
                    if rng.random() < 0.25:  # a neon sign
                        c = neon[int(rng.integers(len(neon)))]
                        sy = y0 + int(0.2 * (h - y0))
                        cv2.rectangle(img, (x0 + 2, sy), (x1 - 2, sy + 2 * step), tuple(float(v) for v in c), -1)
                    x += bw * rng.uniform(1.0, 1.3)
            glow = np.exp(-((np.arange(h, dtype=np.float32) / h - 1.0) / 0.15) ** 2)[:, None, None]
            img += glow * _c((255, 150, 60)) * 0.35
        else:  # sky / sunset over hills
            hill_c = (cols[1] if len(cols) > 1 else _c((60, 50, 70))) * 0.35 if sunset else _c((70, 100, 80))
            _fill_below(img, _ridge(w, 0.8, 0.08, rng), hill_c, 0.3)
        if "fire" in cues.ambient:
            fire = campfire(img, rng)
    return Painted(np.clip(img, 0, 255).astype(np.uint8), fire, sun)


def render_scene(cues: Cues, width: int, height: int, n: int, seed: int, timeline: Timeline,
                 fps: int = 24) -> Iterator[np.ndarray]:
    if cues.scene == "abstract":
        yield from _abstract(cues, width, height, n, seed)
        return
    still, fire, sun = paint_scene(cues, width, height, seed)
    camera = cues.camera if cues.camera_explicit else DEFAULT_CAMERA[cues.scene]
    ambient = tuple(dict.fromkeys(cues.ambient + SCENE_AMBIENT[cues.scene]))
    yield from animate_image(still, None, dataclasses.replace(cues, camera=camera, ambient=ambient), timeline, n, fps,
                             seed, subject_parallax=False, fire_region=fire, still_region=sun)


def _abstract(cues: Cues, w: int, h: int, n: int, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng([seed, 0xAB5])
    sw, sh = max(32, w // 6), max(32, h // 6)
    base = [fbm(rng, sh * 2, sw * 2, 5, 3) for _ in range(3)]
    cols = [np.asarray(c, np.float32) for c in cues.colours] or [_c((255, 90, 60)), _c((60, 120, 255)),
                                                                  _c((250, 220, 90))]
    while len(cols) < 3:
        cols.append(np.clip(cols[-1][::-1] * 0.8 + 40, 0, 255))
    lut = np.zeros((256, 3), np.float32)
    stops = [cols[0] * 0.25, cols[0], cols[1], cols[2], cols[1] * 0.6]
    for i in range(256):
        p = i / 255 * (len(stops) - 1)
        k = min(int(p), len(stops) - 2)
        lut[i] = _mix(stops[k], stops[k + 1], p - k)
    gx, gy = np.meshgrid(np.arange(sw, dtype=np.float32), np.arange(sh, dtype=np.float32))
    for i in range(n):
        t = i / max(n - 1, 1)
        a = 2 * math.pi * t
        ox, oy = sw * 0.5 * ease_in_out(t), sh * 0.25 * math.sin(a)
        warp = 0.25 * sw
        wx = cv2.remap(base[1], gx + ox, gy + oy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        wy = cv2.remap(base[2], gx + oy, gy + ox * 0.5, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        f = cv2.remap(base[0], gx + warp * wx + ox * 0.6, gy + warp * wy, cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REFLECT_101)
        idx = np.clip((f * 0.5 + 0.5 + 0.15 * math.sin(a + 1)) * 255, 0, 255).astype(np.uint8)
        small = lut[idx].astype(np.uint8)
        yield cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
