"""Camera paths: per-frame zoom, offset and roll, eased, turned into affine maps for cv2.warpAffine.

A pose is the view of the source picture that frame t shows. Pose (1, 0, 0, 0) is the picture itself, so the
first frame of every path is the input. Zooming in about a point inside the picture never leaves it; pans and
tilts ride on a zoom so the window has room to move; a pull-out shows the padded canvas (see `layers`), so no
move ever shows a black border. `gain` scales a pose for a depth layer: nearer layers move more (parallax).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pose:
    zoom: float = 1.0  # > 1 magnifies
    ox: float = 0.0  # window offset in source pixels (+x: the view moves right, content moves left)
    oy: float = 0.0
    roll: float = 0.0  # radians

    def scaled(self, gain: float) -> Pose:
        return Pose(1.0 + (self.zoom - 1.0) * gain, self.ox * gain, self.oy * gain, self.roll * gain)


def smootherstep(t: float) -> float:
    t = min(max(t, 0.0), 1.0)
    return t * t * t * (t * (6.0 * t - 15.0) + 10.0)


def ease_in_out(t: float) -> float:
    """Cosine ease: zero velocity at both ends, gentle in the middle."""
    t = min(max(t, 0.0), 1.0)
    return 0.5 - 0.5 * math.cos(math.pi * t)


def there_and_back(t: float) -> float:
    """0 at both ends, 1 in the middle, zero velocity at the ends (used when a tail frame must land)."""
    t = min(max(t, 0.0), 1.0)
    return 0.5 - 0.5 * math.cos(2.0 * math.pi * t)


class CameraPath:
    """Poses for `n` frames of a `width` x `height` picture.

    `move` is one of push_in, pull_out, pan_left, pan_right, tilt_up, tilt_down, orbit, crane_up, crane_down,
    handheld, static. `pivot` is where a push-in aims (the subject), in pixels. With `land` the move goes out
    and comes back so the last frame is the unmoved picture (for a tail frame to land on).
    """

    def __init__(self, move: str, width: int, height: int, n: int, *, speed: float = 1.0, seed: int = 0,
                 pivot: tuple[float, float] | None = None, land: bool = False, duration_s: float = 5.0) -> None:
        self.move, self.w, self.h, self.n = move, width, height, max(n, 1)
        self.speed = float(np.clip(speed, 0.3, 2.0))
        # a 10 s clip travels a little further than a 5 s one, but not twice as far
        self.reach = self.speed * (1.0 if duration_s <= 5.5 else 1.35)
        self.pivot = pivot or (width / 2.0, height / 2.0)
        self.land = land
        rng = np.random.default_rng(seed ^ 0x5EED)
        self._phases = rng.uniform(0, 2 * math.pi, size=(3, 4))
        self._freqs = np.array([0.31, 0.53, 0.87, 1.41]) * (1.0 + 0.1 * rng.standard_normal(4))

    def progress(self, i: int) -> float:
        t = i / max(self.n - 1, 1)
        return there_and_back(t) if self.land else ease_in_out(t)

    def pose(self, i: int) -> Pose:
        e = self.progress(i)
        w, h, r = self.w, self.h, self.reach
        mv = self.move
        if mv == "static":
            return Pose()
        if mv == "push_in":
            return Pose(1.0 + 0.14 * r * e)
        if mv == "pull_out":
            return Pose(1.0 / (1.0 + 0.10 * r * e))
        if mv in ("pan_left", "pan_right", "tilt_up", "tilt_down", "crane_up", "crane_down", "orbit"):
            z = 1.0 + 0.16 * min(r, 1.6) * e
            room_x, room_y = 0.5 * w * (1 - 1 / z) * 0.94, 0.5 * h * (1 - 1 / z) * 0.94
            if mv == "pan_left":
                return Pose(z, -room_x)
            if mv == "pan_right":
                return Pose(z, room_x)
            if mv in ("tilt_up", "crane_up"):
                return Pose(z, 0.0, -room_y)
            if mv in ("tilt_down", "crane_down"):
                return Pose(z, 0.0, room_y)
            # orbit: slide sideways with a slight roll; the layers' parallax sells the arc
            z2 = z + 0.01
            return Pose(z2, 0.8 * room_x, 0.0, -0.006 * e)
        if mv == "handheld":
            ramp = smootherstep(i / max(self.n - 1, 1) * 4.0)
            if self.land:
                ramp *= smootherstep((1.0 - i / max(self.n - 1, 1)) * 4.0)
            z = 1.0 + 0.045 * ramp
            room_x, room_y = 0.5 * w * (1 - 1 / z) * 0.6, 0.5 * h * (1 - 1 / z) * 0.6
            t = i / 24.0
            nx = float(np.mean(np.sin(2 * math.pi * self._freqs * t + self._phases[0])))
            ny = float(np.mean(np.sin(2 * math.pi * self._freqs * t * 1.13 + self._phases[1])))
            nr = float(np.mean(np.sin(2 * math.pi * self._freqs * t * 0.7 + self._phases[2])))
            return Pose(z, room_x * nx * 1.6, room_y * ny * 1.6, 0.0025 * nr * ramp)
        raise ValueError(f"unknown camera move {mv!r}")


def affine(pose: Pose, width: int, height: int, pivot: tuple[float, float], pad: float = 0.0) -> np.ndarray:
    """2x3 matrix mapping output pixel (u, v) to source pixel (x, y) (for WARP_INVERSE_MAP).

    The source is the picture offset by `pad` pixels on each side (a padded canvas).
    """
    px, py = pivot
    c, s = math.cos(pose.roll), math.sin(pose.roll)
    k = 1.0 / pose.zoom
    tx = px + pose.ox - k * (c * px - s * py) + pad
    ty = py + pose.oy - k * (s * px + c * py) + pad
    return np.array([[c * k, -s * k, tx], [s * k, c * k, ty]], dtype=np.float64)


def window_pad(path: CameraPath) -> int:
    """How many pixels of padded canvas the path's poses can reach beyond the picture."""
    if path.move == "pull_out":
        zmin = min(path.pose(i).zoom for i in range(0, path.n, max(1, path.n // 48)))
        zmin = min(zmin, path.pose(path.n // 2 if path.land else path.n - 1).zoom)
        return int(math.ceil(0.5 * max(path.w, path.h) * (1 / zmin - 1))) + 4
    if path.move in ("handheld", "orbit"):
        return int(math.ceil(0.01 * (path.w + path.h))) + 4
    return 4
