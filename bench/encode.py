"""Our encode path vs raw PyAV libx264 on the same 1080p frames, measured side by side.

Goal: ratio <= 1.10. Both encode 120 frames of 1920x1080 with libx264 `veryfast` crf 20 into yuv420p
MP4 with a 5 s AAC track; ours also keeps a thumbnail and spritesheet frames and writes via a
temporary file. Runs are interleaved and the median of each is compared.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from clipforge.media.encode import AUDIO_RATE, encode_mp4
from clipforge.media.stills import jpeg_bytes, spritesheet

W, H, N, FPS = 1920, 1080, 120, 24


def make_frames() -> list[np.ndarray]:
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    frames = []
    for i in range(N):
        r = 128 + 100 * np.sin((x + 8 * i) / 61.0)
        g = 128 + 100 * np.cos((y - 5 * i) / 47.0)
        b = 128 + 100 * np.sin((x + y + 12 * i) / 91.0)
        frames.append(np.stack([r, g, b], -1).astype(np.uint8))
    return frames


def raw_pyav(path: Path, frames: list[np.ndarray], audio: np.ndarray) -> None:
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as c:
        v = c.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        v.options = {"crf": "20", "preset": "veryfast"}
        a = c.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
        for i, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f.pts = i
            c.mux(v.encode(f))
        c.mux(v.encode(None))
        for start in range(0, audio.shape[1], 1024):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, start:start + 1024]), format="fltp",
                                            layout="stereo")
            af.sample_rate, af.pts, af.time_base = AUDIO_RATE, start, Fraction(1, AUDIO_RATE)
            c.mux(a.encode(af))
        c.mux(a.encode(None))


def ours(path: Path, frames: list[np.ndarray], audio: np.ndarray) -> None:
    result = encode_mp4(path, iter(frames), num_frames=N, width=W, height=H, fps=FPS, audio=audio,
                        sample_rate=AUDIO_RATE)
    jpeg_bytes(result.thumbnail)
    jpeg_bytes(spritesheet(result.sprites))


def main(rounds: int = 3) -> None:
    frames = make_frames()
    t = np.arange(5 * AUDIO_RATE) / AUDIO_RATE
    audio = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.3 * np.sin(2 * np.pi * 330 * t)]).astype(np.float32)
    times: dict[str, list[float]] = {"raw": [], "ours": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name, fn in (("raw", raw_pyav), ("ours", ours)) if r % 2 == 0 else (("ours", ours), ("raw", raw_pyav)):
                t0 = time.perf_counter()
                fn(Path(tmp) / f"{name}.mp4", frames, audio)
                times[name].append(time.perf_counter() - t0)
    raw, mine = statistics.median(times["raw"]), statistics.median(times["ours"])
    print(f"raw PyAV libx264 1080p x{N}: {raw:.2f} s ({N / raw:.0f} fps)")
    print(f"clipforge encode path:      {mine:.2f} s ({N / mine:.0f} fps)")
    print(f"ratio ours/raw: {mine / raw:.3f}  (goal <= 1.10)")


if __name__ == "__main__":
    main()
