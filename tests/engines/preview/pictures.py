"""Pictures and a generate() helper for the preview engine's tests."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from clipforge.core.spec import GenerationSpec
from clipforge.engines.base import EngineOutput, EngineRequest
from clipforge.engines.preview import PreviewEngine


def landscape(w: int = 480, h: int = 270, seed: int = 0) -> np.ndarray:
    """A synthetic photo: a cloudy sky, a sea, and a textured subject (a rock with a tower) in front."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    noise = sum(cv2.resize(rng.random((4 * 2 ** k, 7 * 2 ** k)).astype(np.float32), (w, h)) / 2 ** k for k in range(5))
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    horizon = 0.5 * h
    sky = np.stack([90 + 80 * y / horizon, 140 + 60 * y / horizon, 235 - 20 * y / horizon], -1)
    sky = sky + (np.clip(noise - 0.45, 0, 1) * 230)[..., None]
    sea = np.stack([20 + 10 * noise, 70 + 40 * noise, 120 + 50 * noise], -1)
    sea += (10 * np.sin(y * 0.45 + 3 * noise))[..., None]
    img = np.where((y < horizon)[..., None], sky, sea)
    rock = ((x - 0.5 * w) / (0.2 * w)) ** 2 + ((y - 0.78 * h) / (0.26 * h)) ** 2 < 1
    tower = (np.abs(x - 0.5 * w) < 0.035 * w) & (y > 0.3 * h) & (y < 0.7 * h)
    subject = rock | tower
    tex = np.stack([150 + 70 * noise, 80 + 50 * noise, 40 + 30 * noise], -1) + rng.normal(0, 4, (h, w, 1))
    tex[tower] = np.stack([200 - 40 * noise, 40 + 20 * noise, 40 + 20 * noise], -1)[tower]
    img = np.where(subject[..., None], tex, img)
    return np.clip(img, 0, 255).astype(np.uint8)


def generate(prompt: str, *, seed: int = 0, image: np.ndarray | None = None, tail: np.ndarray | None = None,
             audio: bool = True, size: tuple[int, int] = (480, 270), duration: int = 5) -> tuple[EngineOutput, list]:
    spec = GenerationSpec(prompt=prompt, seed=seed, generate_audio=audio, duration=duration,
                          image="in" if image is not None else None, tail_image="tail" if tail is not None else None)
    req = EngineRequest(spec, size[0], size[1], image=Image.fromarray(image) if image is not None else None,
                        tail_image=Image.fromarray(tail) if tail is not None else None)
    out = PreviewEngine().generate(req)
    return out, list(out.frames)




def subject_picture(w: int = 480, h: int = 270, seed: int = 0) -> np.ndarray:
    """A textured green-grey background with a textured orange disc (the subject) in the middle."""
    rng = np.random.default_rng(seed)
    noise = [sum(cv2.resize(rng.random((3 * 2 ** k, 5 * 2 ** k)).astype(np.float32), (w, h)) / 1.6 ** k
                 for k in range(6)) for _ in range(2)]
    a, b = ((n - n.min()) / (n.max() - n.min()) for n in noise)
    img = np.stack([60 + 60 * a, 90 + 70 * a, 80 + 50 * b], -1)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    disc = ((x - w / 2) ** 2 + (y - h / 2) ** 2) < (0.28 * h) ** 2
    img[disc] = np.stack([200 + 50 * b, 110 + 60 * a, 30 + 30 * b], -1)[disc]
    return np.clip(img, 0, 255).astype(np.uint8)
