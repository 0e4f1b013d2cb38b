"""What the sound does: loudness and peaks, prompt-dependent spectra, sync with visual events, dialogue."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from scipy import signal

from clipforge.engines.preview import audio as audio_module
from clipforge.engines.preview.audio import soundscape
from clipforge.engines.preview.events import make_timeline
from clipforge.engines.preview.loudness import integrated_loudness, true_peak
from clipforge.engines.preview.prompt import parse_prompt
from engines.preview.pictures import generate, landscape

RATE = 48_000


def test_bs1770_calibration():
    t = np.arange(3 * RATE) / RATE
    tone = 0.1 * np.sin(2 * np.pi * 997 * t)
    assert integrated_loudness(np.stack([tone, 0 * t])) == pytest.approx(-23.01, abs=0.05)  # one channel
    assert integrated_loudness(np.stack([tone, tone])) == pytest.approx(-20.0, abs=0.05)
    assert integrated_loudness(np.zeros((2, RATE))) == float("-inf")


@pytest.mark.parametrize("prompt", ["waves crashing on a beach", "heavy rain", "happy upbeat music", "campfire",
                                    "birds in a forest", "busy city street with a crowd", "deep space nebula",
                                    "thunderstorm with lightning", "a portrait"])
def test_loudness_and_peak(prompt):
    audio = soundscape(parse_prompt(prompt), 5, seed=3)
    assert audio.shape == (2, 5 * RATE) and audio.dtype == np.float32
    assert -20 <= integrated_loudness(audio) <= -12
    assert true_peak(audio) < 1.0 and np.abs(audio).max() < 1.0
    assert np.abs(audio[:, :100]).max() < 0.05 and np.abs(audio[:, -100:]).max() < 0.05  # fades
    assert not np.allclose(audio[0], audio[1])  # stereo, not dual mono


def centroid(audio: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(audio.mean(0)))
    f = np.fft.rfftfreq(audio.shape[1], 1 / RATE)
    return float((spec * f).sum() / spec.sum())


def test_rain_and_music_sound_different():
    out_rain, _ = generate("rain on a window", size=(64, 36))
    out_music, _ = generate("calm piano music", size=(64, 36))
    rain, music = centroid(out_rain.audio), centroid(out_music.audio)
    assert rain > 2 * music
    # music is tonal: a few spectral peaks hold much of its energy; rain's spectrum is flat
    def peakiness(a: np.ndarray) -> float:
        p = np.abs(np.fft.rfft(a.mean(0))) ** 2
        return float(np.sort(p)[-200:].sum() / p.sum())
    assert peakiness(out_music.audio) > 5 * peakiness(out_rain.audio)


def test_thunder_follows_the_lightning_flash():
    prompt = "thunderstorm with lightning over the sea"
    out, frames = generate(prompt, image=landscape(), seed=5)
    brightness = np.array([f.mean() for f in frames])
    flash_frame = int(np.argmax(np.diff(brightness))) + 1
    tl = make_timeline(parse_prompt(prompt), 5, 5)
    assert abs(flash_frame / 24 - tl.flashes[0]) < 0.1  # the picture flashes when the timeline says
    low = signal.sosfilt(signal.butter(4, 150, fs=RATE, output="sos"), out.audio.mean(0))  # the rumble
    env = np.sqrt(np.convolve(low ** 2, np.ones(2400) / 2400, mode="same"))
    before = env[int((tl.flashes[0] - 0.3) * RATE):int(tl.flashes[0] * RATE)].mean()
    onset = tl.flashes[0] + tl.thunder_delays[0]
    after = env[int(onset * RATE):int((onset + 0.8) * RATE)].mean()
    assert after > 2 * before


def test_surf_swells_with_the_waves():
    cues = parse_prompt("ocean waves")
    tl = make_timeline(cues, 10, 2)
    audio = soundscape(cues, 10, 2, tl)
    hop = RATE // 10
    rms = np.sqrt([np.mean(audio[:, i:i + hop] ** 2) for i in range(0, audio.shape[1] - hop, hop)])
    swell = tl.swell(np.arange(len(rms)) / 10 + 0.05)
    core = slice(5, -8)  # leave the fades out
    assert np.corrcoef(rms[core], swell[core])[0, 1] > 0.6


def test_dialogue_is_skipped_with_a_log_line_without_tts(caplog, monkeypatch):
    monkeypatch.setattr(audio_module.shutil, "which", lambda name: None)
    cues = parse_prompt('a man says "hello there, welcome to the harbour"')
    assert cues.dialogue == ("hello there, welcome to the harbour",)
    with caplog.at_level(logging.INFO, logger="clipforge.engines.preview.audio"):
        audio = soundscape(cues, 5, 0)
    assert -20 <= integrated_loudness(audio) <= -12
    assert any("not spoken" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng)")
def test_dialogue_is_spoken_with_espeak_ng():
    speech = audio_module.speak(("hello there, welcome to the harbour",))
    assert speech is not None and len(speech) > 0.8 * 48_000
    voiced = np.abs(speech) > 0.05
    assert voiced.mean() > 0.2  # words, not silence
    plain = soundscape(parse_prompt("a man at the harbour"), 5, 0)
    spoken = soundscape(parse_prompt('a man at the harbour, "hello there, welcome to the harbour"'), 5, 0)
    assert -20 <= integrated_loudness(spoken) <= -12
    band = lambda a: np.abs(np.fft.rfft(a[0]))[300 * 5:3000 * 5].sum()  # noqa: E731 - speech band, 5 s clips
    assert band(spoken) > 1.2 * band(plain)


def test_dialogue_never_reaches_espeak_as_an_argument(monkeypatch: pytest.MonkeyPatch, tmp_path):
    calls = []

    def fake_run(argv, **kwargs):
        calls.append((argv, kwargs.get("input")))
        raise OSError("not really run")

    monkeypatch.setattr(audio_module.shutil, "which", lambda name: "/usr/bin/espeak-ng")
    monkeypatch.setattr(audio_module.subprocess, "run", fake_run)
    cues = parse_prompt(f'a man says "-f{tmp_path}/secret" and "--help me\x00"')
    assert audio_module.speak(cues.dialogue) is None
    (argv, stdin), = calls
    assert argv[-1] == "--stdin" and not any("secret" in a or "help" in a for a in argv)
    assert stdin == f"-f{tmp_path}/secret ... --help me ".encode()


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng)")
def test_dialogue_naming_a_file_does_not_speak_the_file(tmp_path, monkeypatch):
    secret = tmp_path / "secret"
    secret.write_text("the launch code is banana. " * 30)  # about half a minute when spoken
    monkeypatch.chdir(tmp_path)  # a relative name: spoken, it is a few words wherever pytest puts tmp_path
    spoken_file = audio_module.speak((secret.read_text()[:300],))
    spoken_option = audio_module.speak((f"-f{secret.name}",))
    assert spoken_file is not None and spoken_option is not None
    assert spoken_option.shape[0] < spoken_file.shape[0] / 2  # the path's few words, not the file
    assert spoken_option.shape[0] < 8 * RATE
