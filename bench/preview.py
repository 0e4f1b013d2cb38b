"""The preview engine end to end (render + encode, as the worker runs it) vs raw libx264 encoding, in one run.

Goal: a 5 s 1080p i2v clip end to end <= 1.5x the raw PyAV libx264 encode of 120 ready-made 1080p frames
(veryfast, crf 20, yuv420p). Also prints how a 10 s clip scales against a 5 s one (goal: about 2x), and a
t2v and a tail-morph clip for reference. Runs are interleaved; medians are compared.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

from clipforge.core.spec import GenerationSpec
from clipforge.engines.base import EngineRequest
from clipforge.engines.preview import PreviewEngine
from clipforge.media.encode import encode_mp4

W, H, FPS = 1920, 1080, 24
PROMPT = "a lighthouse on a rock by the sea, waves, slow push in"


def picture(seed: int = 0) -> np.ndarray:
    """A photo-like 1080p picture: cloudy sky, sea, a textured rock with a tower."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    noise = sum(cv2.resize(rng.random((4 * 2 ** k, 7 * 2 ** k)).astype(np.float32), (W, H)) / 2 ** k
                for k in range(6))
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    sky = np.stack([90 + 80 * y / 540, 140 + 60 * y / 540, 235 - 20 * y / 540], -1) + (
        np.clip(noise - 0.45, 0, 1) * 230)[..., None]
    sea = np.stack([20 + 10 * noise, 70 + 40 * noise, 120 + 50 * noise], -1) + (18 * np.sin(y * 0.2 + 3 * noise))[
        ..., None]
    img = np.where((y < 540)[..., None], sky, sea)
    rock = ((x - 960) / 380) ** 2 + ((y - 840) / 280) ** 2 < 1
    tex = np.stack([150 + 70 * noise, 80 + 50 * noise, 40 + 30 * noise], -1) + rng.normal(0, 10, (H, W, 1))
    img = np.where(rock[..., None], tex, img)
    return np.clip(img, 0, 255).astype(np.uint8)


def raw_encode(path: Path, frames: list[np.ndarray]) -> None:
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as c:
        v = c.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        v.options = {"crf": "20", "preset": "veryfast"}
        for i, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f.pts = i
            f.time_base = Fraction(1, FPS)
            c.mux(v.encode(f))
        c.mux(v.encode(None))


def end_to_end(path: Path, image: Image.Image, prompt: str, duration: int = 5, tail: Image.Image | None = None,
               i2v: bool = True) -> None:
    spec = GenerationSpec(prompt=prompt, duration=duration, seed=3, image="in" if i2v else None)
    req = EngineRequest(spec, W, H, image=image if i2v else None, tail_image=tail)
    out = PreviewEngine().generate(req)
    encode_mp4(path, out.frames, num_frames=out.num_frames, width=W, height=H, fps=FPS, audio=out.audio,
               sample_rate=out.sample_rate)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    img = picture()
    image, tail = Image.fromarray(img), Image.fromarray(np.ascontiguousarray(picture(5)[:, ::-1]))
    # the raw encode gets 120 frames with real motion (a slow zoom), made before timing
    frames = [cv2.resize(img[int(i * 0.6):H - int(i * 0.6), int(i):W - int(i)], (W, H)) for i in range(120)]
    t: dict[str, list[float]] = {"raw": [], "e2e5": [], "e2e10": []}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for r in range(args.rounds):
            order = [("raw", lambda: raw_encode(d / "raw.mp4", frames)),
                     ("e2e5", lambda: end_to_end(d / "e5.mp4", image, PROMPT)),
                     ("e2e10", lambda: end_to_end(d / "e10.mp4", image, PROMPT, 10))]
            for name, fn in (order if r % 2 == 0 else order[::-1]):
                t0 = time.perf_counter()
                fn()
                t[name].append(time.perf_counter() - t0)
        extra = {}
        for name, fn in (("t2v 5 s (ocean)", lambda: end_to_end(d / "t.mp4", image, "blue ocean waves", i2v=False)),
                         ("i2v 5 s with tail morph", lambda: end_to_end(d / "m.mp4", image, PROMPT, tail=tail))):
            t0 = time.perf_counter()
            fn()
            extra[name] = time.perf_counter() - t0
    raw, e5, e10 = (statistics.median(t[k]) for k in ("raw", "e2e5", "e2e10"))
    print(f"raw PyAV libx264 1080p x120:        {raw:.2f} s ({120 / raw:.0f} fps)")
    print(f"preview i2v 5 s 1080p end to end:   {e5:.2f} s ({120 / e5:.0f} fps)")
    print(f"preview i2v 10 s 1080p end to end:  {e10:.2f} s")
    for k, v in extra.items():
        print(f"preview {k}: {v:.2f} s (ratio {v / raw:.2f})")
    print(f"ratio e2e 5 s / raw: {e5 / raw:.3f}  (goal <= 1.5)")
    print(f"scaling 10 s / 5 s: {e10 / e5:.2f}  (linear = 2.0)")


if __name__ == "__main__":
    main()
