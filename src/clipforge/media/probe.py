"""Read back what an MP4 holds: streams, durations, frames and audio samples; check and still a clip made elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from clipforge.media.encode import EncodeResult
from clipforge.media.stills import sprite_tile


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


class UndecodableVideo(ValueError):
    """A file that is not a video clipforge can serve (no video stream, or frames that do not decode)."""


def read_clip(path: Path, sprite_count: int = 10) -> EncodeResult:
    """Decode every frame of an MP4 made elsewhere (a hosted provider's output) and keep what encoding
    keeps: size, frame count, fps, audio presence, a middle-frame thumbnail and evenly spaced sprites.
    Raises UndecodableVideo when it has no video stream or a frame fails to decode."""
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise UndecodableVideo("the file has no video stream")
            stream = c.streams.video[0]
            has_audio = bool(c.streams.audio)
            fps = int(round(float(stream.average_rate or stream.guessed_rate or 24)))
            expected = stream.frames or 0
            tiles, middle = _decode_stills(c, stream, expected, sprite_count)
    except av.FFmpegError as exc:
        raise UndecodableVideo(f"it does not decode: {exc}") from exc
    count, width, height, thumbnail = middle
    if count == 0:
        raise UndecodableVideo("it holds no video frames")
    return EncodeResult(path, count, width, height, fps, has_audio, thumbnail, tiles)


def _decode_stills(c: Any, stream: Any, expected: int, sprite_count: int) -> tuple[list[np.ndarray], tuple]:
    sprite_at = set(np.linspace(0, max(expected, 1) - 1, sprite_count).round().astype(int).tolist())
    tiles: list[np.ndarray] = []
    thumbnail, count, width, height = None, 0, 0, 0
    for frame in c.decode(stream):
        if count in sprite_at or (count == expected // 2) or thumbnail is None:
            rgb = frame.to_ndarray(format="rgb24")
            height, width = rgb.shape[:2]
            if thumbnail is None or count == expected // 2:
                thumbnail = rgb
            if count in sprite_at:
                tiles.append(sprite_tile(rgb))
        count += 1
    return tiles, (count, width, height, thumbnail)
