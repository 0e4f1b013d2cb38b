"""Read back what an MP4 holds: streams, durations, frames and audio samples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np


@dataclass
class StreamInfo:
    codec: str
    duration: float
    width: int = 0
    height: int = 0
    pix_fmt: str | None = None
    frames: int = 0
    sample_rate: int = 0
    channels: int = 0


@dataclass
class ProbeResult:
    format_duration: float
    video: StreamInfo | None
    audio: StreamInfo | None


def probe(path: Path) -> ProbeResult:
    """Decode-free facts plus exact frame / sample counts (by demuxing packets)."""
    with av.open(str(path)) as c:
        video = audio = None
        if c.streams.video:
            s = c.streams.video[0]
            frames = sum(1 for p in c.demux(s) if p.size)
            video = StreamInfo(s.codec_context.name, float(s.duration * s.time_base) if s.duration else 0.0,
                               s.codec_context.width, s.codec_context.height,
                               s.codec_context.pix_fmt, frames=frames)
        duration = float(c.duration / av.time_base) if c.duration else 0.0
    with av.open(str(path)) as c:
        if c.streams.audio:
            s = c.streams.audio[0]
            samples = sum(f.samples for f in c.decode(s))
            audio = StreamInfo(s.codec_context.name, samples / s.codec_context.sample_rate,
                               sample_rate=s.codec_context.sample_rate, channels=s.codec_context.channels,
                               frames=samples)
    return ProbeResult(duration, video, audio)


def decode_frames(path: Path, indices: list[int] | None = None) -> list[np.ndarray]:
    """Decoded RGB frames (all, or those at `indices`)."""
    wanted = set(indices) if indices is not None else None
    out = []
    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if wanted is None or i in wanted:
                out.append(frame.to_ndarray(format="rgb24"))
    return out


def decode_audio(path: Path) -> tuple[np.ndarray, int]:
    """All audio as float32 (channels, samples) and its sample rate."""
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        chunks = [f.to_ndarray() for f in c.decode(s)]
        return np.concatenate(chunks, axis=1).astype(np.float32), s.codec_context.sample_rate
