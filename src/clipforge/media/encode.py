"""Encode frames and audio into an H.264 + AAC MP4 (yuv420p, faststart).

The audio never clips after decoding: AAC's decoded waveform overshoots its input's peaks (transients and
crackle the most), so the audio is round-tripped through the same encoder first and scaled down (never
clipped) until the decoded true peak is under `DECODED_PEAK_DBTP`.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from scipy import signal

from clipforge.media.stills import sprite_tile

AUDIO_RATE = 48_000
AUDIO_FRAME = 1024
SPRITE_COUNT = 10
AAC_BIT_RATE = 192_000
DECODED_PEAK_DBTP = -1.0  # the decoded file's true peak stays under this


@dataclass
class EncodeResult:
    path: Path
    num_frames: int
    width: int
    height: int
    fps: int
    has_audio: bool
    thumbnail: np.ndarray | None = None
    sprites: list[np.ndarray] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps


def fit_audio(audio: np.ndarray, sample_rate: int, num_samples: int) -> np.ndarray:
    """Audio as float32 stereo at 48 kHz with exactly `num_samples` samples.

    Resampling goes through libswresample; the tail is trimmed or padded with silence.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None, :]
    if audio.shape[0] == 1:
        audio = np.repeat(audio, 2, axis=0)
    audio = np.ascontiguousarray(np.clip(audio[:2], -1.0, 1.0))
    if sample_rate != AUDIO_RATE and audio.shape[1] > 0:
        audio = _resample(audio, sample_rate)
    out = np.zeros((2, num_samples), dtype=np.float32)
    n = min(num_samples, audio.shape[1])
    out[:, :n] = audio[:, :n]
    return out


def _resample(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE)
    frame = av.AudioFrame.from_ndarray(audio, format="fltp", layout="stereo")
    frame.sample_rate = sample_rate
    chunks = [f.to_ndarray() for f in resampler.resample(frame)]
    chunks += [f.to_ndarray() for f in resampler.resample(None)]
    return np.concatenate(chunks, axis=1) if chunks else np.zeros((2, 0), np.float32)


def _mux_audio(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
               audio: np.ndarray) -> None:
    for start in range(0, audio.shape[1], AUDIO_FRAME):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, start:start + AUDIO_FRAME]),
                                           format="fltp", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = start
        frame.time_base = Fraction(1, AUDIO_RATE)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def true_peak(audio: np.ndarray) -> float:
    """Peak magnitude of (channels, samples) audio oversampled 4x: the inter-sample peak a DAC reconstructs."""
    if audio.size == 0:
        return 0.0
    up = signal.resample_poly(np.asarray(audio, np.float64), 4, 1, axis=1)
    return float(max(np.abs(up).max(), np.abs(audio).max()))


def aac_round_trip(audio: np.ndarray) -> np.ndarray:
    """`audio` (stereo float at 48 kHz) through the AAC encoder used for MP4s and back, in memory."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="adts") as container:
        stream = container.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
        stream.bit_rate = AAC_BIT_RATE
        _mux_audio(container, stream, audio)
    buf.seek(0)
    with av.open(buf, "r", format="aac") as container:
        chunks = [f.to_ndarray() for f in container.decode(audio=0)]
    return np.concatenate(chunks, axis=1) if chunks else np.zeros((2, 0), np.float32)


def decode_safe(audio: np.ndarray, ceiling_dbtp: float = DECODED_PEAK_DBTP) -> np.ndarray:
    """`audio` scaled down just enough that its decoded AAC's true peak is under `ceiling_dbtp` (unchanged
    when it already is; quiet audio is never raised)."""
    ceiling = 10 ** (ceiling_dbtp / 20)
    for _ in range(4):
        peak = true_peak(aac_round_trip(audio))
        if peak <= ceiling:
            break
        audio = (audio * (0.985 * ceiling / peak)).astype(np.float32)
    return audio


def encode_mp4(
    path: Path,
    frames: Iterable[np.ndarray],
    *,
    num_frames: int,
    width: int,
    height: int,
    fps: int,
    audio: np.ndarray | None = None,
    sample_rate: int = AUDIO_RATE,
    crf: int = 20,
    preset: str = "veryfast",
    on_frame: Callable[[int, int], None] | None = None,
    thumbnail_at: int | None = None,
) -> EncodeResult:
    """Write an MP4 to `path` (via a temporary name, renamed when complete).

    Exactly `num_frames` frames are written (fewer from the iterator is an error; extra ones are
    ignored). Frame `thumbnail_at` (default: the middle one) and `SPRITE_COUNT` evenly spaced frames are
    kept for stills.
    `on_frame(i, n)` is called after each frame (progress and cancel hook).
    """
    if width % 2 or height % 2:
        raise ValueError(f"width and height have to be even for yuv420p but are {width}x{height}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".enc-", suffix=".mp4")
    os.close(fd)
    thumb_at = num_frames // 2 if thumbnail_at is None else min(max(thumbnail_at, 0), num_frames - 1)
    sprite_at = set(np.linspace(0, num_frames - 1, SPRITE_COUNT).round().astype(int).tolist())
    result = EncodeResult(path, num_frames, width, height, fps, audio is not None)
    # the audio's AAC round trip runs beside the video encode (FFmpeg releases the GIL while it codes)
    pool = ThreadPoolExecutor(1, thread_name_prefix="aac-check")
    samples = round(num_frames * AUDIO_RATE / fps)
    safe_audio = pool.submit(lambda: decode_safe(fit_audio(audio, sample_rate, samples))) if audio is not None else None
    try:
        with av.open(tmp, "w", format="mp4", options={"movflags": "+faststart"}) as container:
            vstream = container.add_stream("libx264", rate=fps)
            vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
            vstream.options = {"crf": str(crf), "preset": preset}
            astream = container.add_stream("aac", rate=AUDIO_RATE, layout="stereo") if audio is not None else None
            if astream is not None:
                astream.bit_rate = AAC_BIT_RATE
            count = 0
            for rgb in frames:
                if count == num_frames:
                    break
                if rgb.shape != (height, width, 3):
                    raise ValueError(f"frame {count} has shape {rgb.shape}, expected {(height, width, 3)}")
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame.pts = count
                container.mux(vstream.encode(frame))
                if count == thumb_at:
                    result.thumbnail = rgb.copy()
                if count in sprite_at:
                    result.sprites.append(sprite_tile(rgb))
                count += 1
                if on_frame:
                    on_frame(count, num_frames)
            if count != num_frames:
                raise ValueError(f"engine produced {count} frames, expected {num_frames}")
            container.mux(vstream.encode(None))
            if astream is not None and safe_audio is not None:
                _mux_audio(container, astream, safe_audio.result())
        os.replace(tmp, path)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        Path(tmp).unlink(missing_ok=True)
    return result
