"""PyAV round trips: what encode_mp4 writes is what probe and decode read back."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipforge.media.encode import encode_mp4, fit_audio
from clipforge.media.probe import decode_audio, decode_frames, probe
from clipforge.media.stills import jpeg_bytes, spritesheet


def ramp(n: int, w: int = 96, h: int = 64):
    for i in range(n):
        frame = np.zeros((h, w, 3), np.uint8)
        frame[:, :, 0] = (i * 255) // max(n - 1, 1)
        frame[:, (i * w) // n:, 1] = 200
        yield frame


@pytest.mark.parametrize(("seconds", "rate"), [(5, 24_000), (10, 48_000)])
def test_durations_and_audio_are_exact(tmp_path: Path, seconds: int, rate: int):
    n = seconds * 24
    t = np.arange(int(seconds * rate * 0.8)) / rate  # shorter than the video: padded with silence
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    result = encode_mp4(tmp_path / "a.mp4", ramp(n), num_frames=n, width=96, height=64, fps=24, audio=tone,
                        sample_rate=rate)
    info = probe(result.path)
    assert info.video.frames == n and abs(info.video.duration - seconds) < 1e-6
    assert info.audio.sample_rate == 48_000 and info.audio.channels == 2
    assert abs(info.audio.duration - seconds) <= 1 / 24
    audio, sr = decode_audio(result.path)
    spectrum = np.abs(np.fft.rfft(audio[0, 48_000:96_000]))
    assert abs(np.argmax(spectrum) * sr / 48_000 - 1000) < 5  # the tone survived resampling at its pitch
    tail = audio[:, int(seconds * 0.85 * sr):int(seconds * 0.95 * sr)]
    assert np.abs(tail).max() < 0.01  # padded with silence


def test_frames_round_trip_and_order(tmp_path: Path):
    result = encode_mp4(tmp_path / "b.mp4", ramp(120), num_frames=120, width=96, height=64, fps=24)
    first, last = decode_frames(result.path, [0, 119])
    assert first[..., 0].mean() < 10 and last[..., 0].mean() > 245
    assert probe(result.path).audio is None and result.has_audio is False


def test_wrong_sizes_and_counts_are_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="even"):
        encode_mp4(tmp_path / "c.mp4", ramp(5), num_frames=5, width=95, height=64, fps=24)
    with pytest.raises(ValueError, match="produced 10 frames, expected 120"):
        encode_mp4(tmp_path / "d.mp4", ramp(10), num_frames=120, width=96, height=64, fps=24)
    with pytest.raises(ValueError, match="shape"):
        encode_mp4(tmp_path / "e.mp4", ramp(5, 64, 64), num_frames=5, width=96, height=64, fps=24)
    assert not (tmp_path / "d.mp4").exists() and list(tmp_path.glob(".enc-*")) == []


def test_stills(tmp_path: Path):
    result = encode_mp4(tmp_path / "f.mp4", ramp(48), num_frames=48, width=96, height=64, fps=24)
    assert len(result.sprites) == 10 and result.thumbnail.shape == (64, 96, 3)
    sheet = spritesheet(result.sprites)
    assert sheet.shape == (2 * 171, 5 * 256, 3)
    thumb = Image.open(io.BytesIO(jpeg_bytes(result.thumbnail)))
    assert thumb.format == "JPEG" and thumb.size == (96, 64)


def test_fit_audio_shapes():
    mono = np.ones(100, np.float32) * 2.0
    out = fit_audio(mono, 48_000, 150)
    assert out.shape == (2, 150) and out.max() == 1.0 and out[:, 100:].max() == 0


def _decoded_levels(path: Path) -> tuple[float, float, float]:
    """(sample peak, true peak in dBFS, integrated loudness in LUFS) of an MP4's decoded audio."""
    from clipforge.engines.preview.loudness import integrated_loudness, true_peak

    audio, rate = decode_audio(path)
    return float(np.abs(audio).max()), 20 * np.log10(true_peak(audio)), integrated_loudness(audio, rate)


def test_a_full_scale_signal_does_not_clip_after_aac(tmp_path: Path):
    """A square wave at 0.99 overshoots to about 1.2 through AAC; the encoder lowers it so the file does not."""
    t = np.arange(5 * 48_000) / 48_000
    square = (0.99 * np.sign(np.sin(2 * np.pi * 220 * t))).astype(np.float32)
    result = encode_mp4(tmp_path / "sq.mp4", ramp(120), num_frames=120, width=96, height=64, fps=24, audio=square)
    peak, tp_db, _ = _decoded_levels(result.path)
    assert peak < 1.0 and tp_db <= -1.0, (peak, tp_db)


def test_quiet_audio_is_left_alone(tmp_path: Path):
    t = np.arange(5 * 48_000) / 48_000
    tone = (0.25 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    result = encode_mp4(tmp_path / "q.mp4", ramp(120), num_frames=120, width=96, height=64, fps=24, audio=tone)
    peak, _, _ = _decoded_levels(result.path)
    assert 0.24 < peak < 0.26


@pytest.mark.parametrize(("prompt", "seconds", "seed"), [
    ('a campfire at night, "we made it"', 10, 0),  # crackle under speech: decoded at +1 dBTP before the fix
    ('"Hello!" she shouts, "Run! The storm is coming!"', 5, 1),
    ("a lighthouse by the sea, thunder and lightning", 10, 0),
])
def test_preview_soundtracks_never_clip_after_encoding(tmp_path: Path, prompt: str, seconds: int, seed: int):
    from clipforge.engines.preview.audio import soundscape
    from clipforge.engines.preview.prompt import parse_prompt

    audio = soundscape(parse_prompt(prompt), seconds, seed)
    n = seconds * 24
    result = encode_mp4(tmp_path / "s.mp4", ramp(n), num_frames=n, width=96, height=64, fps=24, audio=audio)
    peak, tp_db, lufs = _decoded_levels(result.path)
    assert peak < 1.0 and tp_db <= -0.5, (peak, tp_db)
    assert -17.0 <= lufs <= -15.0, lufs
