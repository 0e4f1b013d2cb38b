"""Layered stereo soundscapes from the prompt, tied to the clip's visual events, normalised to -16 LUFS.

Layers: ocean (surf that swells with the picture's waves), rain, wind (gusts), fire (crackle), birds, city
traffic, crowd babble, a space drone, thunder after each lightning flash, and a music bed whose key, mode and
tempo follow the prompt. Quoted dialogue is spoken with `espeak-ng` when it is on PATH.
"""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
from scipy import signal

from clipforge.engines.preview.events import Timeline, make_timeline
from clipforge.engines.preview.loudness import normalise
from clipforge.engines.preview.prompt import Cues

log = logging.getLogger(__name__)

RATE = 48_000
TARGET_LUFS = -16.0
PEAK_DBTP = -2.0  # true peak before encoding: AAC's decoded peaks land up to ~1 dB higher
AAC_BAND_HZ = 15_000

SCENE_SOUNDS = {"ocean": ("ocean", "wind"), "forest": ("birds", "wind"), "city": ("city",), "space": ("space",),
                "sky": ("wind", "music"), "abstract": ("music",)}
LEVELS_DB = {"ocean": 0.0, "rain": -1.0, "wind": -6.0, "fire": -3.0, "birds": -7.0, "city": -3.0, "crowd": -5.0,
             "space": -2.0, "music": -4.0, "thunder": 4.0}


class _Synth:
    def __init__(self, n: int, seed: int, timeline: Timeline) -> None:
        self.n, self.tl = n, timeline
        self.rng = np.random.default_rng([seed, 0xA0D])
        self.t = np.arange(n, dtype=np.float64) / RATE

    def noise(self, colour: float = 0.0, channels: int = 2) -> np.ndarray:
        """Gaussian noise with a 1/f^colour power spectrum (0 white, 1 pink, 2 brown), unit RMS."""
        white = self.rng.standard_normal((channels, self.n))
        if colour:
            spec = np.fft.rfft(white, axis=1)
            f = np.fft.rfftfreq(self.n, 1 / RATE)
            spec *= 1.0 / np.maximum(f, 20.0) ** (colour / 2)
            white = np.fft.irfft(spec, n=self.n, axis=1)
        return white / (np.sqrt(np.mean(white ** 2)) + 1e-12)

    @staticmethod
    def band(x: np.ndarray, lo: float | None, hi: float | None, order: int = 4) -> np.ndarray:
        if lo and hi:
            sos = signal.butter(order, [lo, hi], btype="band", fs=RATE, output="sos")
        elif lo:
            sos = signal.butter(order, lo, btype="high", fs=RATE, output="sos")
        else:
            sos = signal.butter(order, hi, btype="low", fs=RATE, output="sos")
        return signal.sosfilt(sos, x, axis=-1)

    def pan(self, mono: np.ndarray, p: float | np.ndarray) -> np.ndarray:
        """Equal-power pan, p in [-1 (left), 1 (right)]."""
        a = (np.asarray(p) + 1) * math.pi / 4
        return np.stack([mono * np.cos(a), mono * np.sin(a)])

    # ---- layers ------------------------------------------------------------------------------------
    def ocean(self) -> np.ndarray:
        swell = np.asarray(self.tl.swell(self.t))
        rumble = self.band(self.noise(2.0), None, 500)
        hiss = self.band(self.noise(1.0), 1500, 9000)
        # the surf's hiss breaks just after each crest: loudness follows the picture's wave height
        crest = np.clip(swell - 0.55, 0, None) ** 1.5 / 0.45 ** 1.5
        return rumble * (0.35 + 0.65 * swell) + 0.7 * hiss * (0.1 + 0.9 * crest)

    def rain(self) -> np.ndarray:
        hiss = self.band(self.noise(0.3), 1200, 12000)
        drops = np.zeros((2, self.n))
        count = int(180 * self.n / RATE)
        idx = self.rng.integers(0, self.n, (2, count))
        np.put_along_axis(drops, idx, self.rng.pareto(3.0, (2, count)) * 4.0, axis=1)
        drops = self.band(drops, 2500, 9000, order=2)
        return hiss + drops

    def wind(self) -> np.ndarray:
        env = 0.45 + 0.15 * np.sin(2 * math.pi * 0.13 * self.t + self.rng.uniform(0, 6))
        for g in self.tl.gusts:
            env = env + 0.6 * np.exp(-((self.t - g) / 0.8) ** 2)
        body = self.band(self.noise(1.5), 80, 900)
        whistle = self.band(self.noise(0.0), 600, 760, order=2) * 0.6
        return (body + whistle) * env

    def fire(self) -> np.ndarray:
        roar = self.band(self.noise(2.0), 40, 300)
        imp = np.zeros((2, self.n))
        count = int(35 * self.n / RATE)
        idx = self.rng.integers(0, self.n, (2, count))
        np.put_along_axis(imp, idx, np.minimum(self.rng.pareto(2.5, (2, count)), 4.0) * 6.0, axis=1)
        k = self.rng.standard_normal(int(0.012 * RATE)) * np.exp(-np.arange(int(0.012 * RATE)) / (0.002 * RATE))
        # band-limited pops: full-band clicks come out of AAC with peaks far above their own
        crackle = self.band(signal.fftconvolve(imp, k[None, :], axes=1)[:, :self.n], 1000, 7000, order=2)
        return roar + 0.45 * crackle + 0.05 * self.band(self.noise(0.5), 2000, 8000)

    def birds(self) -> np.ndarray:
        out = np.zeros((2, self.n))
        t = 0.2
        dur = self.n / RATE
        while t < dur - 0.3:
            f0 = self.rng.uniform(2200, 4800)
            pan = self.rng.uniform(-0.8, 0.8)
            for _ in range(int(self.rng.integers(2, 6))):
                ln = self.rng.uniform(0.04, 0.11)
                m = int(ln * RATE)
                tt = np.arange(m) / RATE
                sweep = f0 * (1 + self.rng.uniform(-0.35, 0.35) * tt / ln)
                ph = 2 * math.pi * np.cumsum(sweep) / RATE
                s = (np.sin(ph) + 0.25 * np.sin(2 * ph)) * np.sin(math.pi * tt / ln) ** 2
                a = int(t * RATE)
                if a + m < self.n:
                    out[:, a:a + m] += self.pan(s * self.rng.uniform(0.5, 1.0), pan)
                t += ln + self.rng.uniform(0.02, 0.08)
            t += self.rng.exponential(0.7)
        return out + 0.15 * self.band(self.noise(1.0), 200, 2000)

    def city(self) -> np.ndarray:
        rumble = self.band(self.noise(2.0), 30, 300)
        out = rumble + 0.3 * self.band(self.noise(1.0), 300, 3000)
        dur = self.n / RATE
        for c in np.sort(self.rng.uniform(0.3, dur - 0.3, max(2, int(dur / 2)))):
            width = self.rng.uniform(0.8, 1.6)
            env = np.exp(-((self.t - c) / width) ** 2)
            direction = self.rng.choice([-1.0, 1.0])
            car = self.band(self.noise(1.0, channels=1)[0], 120, 1600) * env
            out += 1.2 * self.pan(car, np.clip(direction * (self.t - c) / width, -1, 1))
        if self.rng.random() < 0.6:  # a distant horn
            a, m = int(self.rng.uniform(0.5, dur - 1) * RATE), int(0.35 * RATE)
            tt = np.arange(m) / RATE
            horn = np.sign(np.sin(2 * math.pi * 415 * tt)) + np.sign(np.sin(2 * math.pi * 494 * tt))
            horn = self.band(horn * np.minimum(1, np.minimum(tt, tt[::-1]) / 0.03), None, 2500, 2) * 0.15
            out[:, a:a + m] += self.pan(horn, self.rng.uniform(-0.7, 0.7))
        return out

    def crowd(self) -> np.ndarray:
        out = np.zeros((2, self.n))
        for _ in range(10):
            syll = self.rng.uniform(3.0, 6.0)
            env = np.clip(np.sin(2 * math.pi * syll * self.t + self.rng.uniform(0, 6)), 0, None) ** 2
            env *= np.clip(np.sin(2 * math.pi * self.rng.uniform(0.1, 0.3) * self.t + self.rng.uniform(0, 6)) + 0.6,
                           0, None)
            f1 = self.rng.uniform(350, 800)
            voice = self.band(self.noise(0.5, channels=1)[0], f1 * 0.7, f1 * 1.6, order=2)
            voice += 0.5 * self.band(self.noise(0.5, channels=1)[0], 1500, 2800, order=2)
            out += self.pan(voice * env, self.rng.uniform(-0.9, 0.9))
        return out

    def space(self) -> np.ndarray:
        root = self.rng.choice([41.2, 43.65, 49.0, 55.0])
        out = np.zeros((2, self.n))
        for mult, amp in ((1, 1.0), (1.5, 0.6), (2, 0.5), (3, 0.25), (4.5, 0.12)):
            for ch, det in ((0, -0.3), (1, 0.3)):
                lfo = 1 + 0.3 * np.sin(2 * math.pi * self.rng.uniform(0.05, 0.2) * self.t + self.rng.uniform(0, 6))
                out[ch] += amp * lfo * np.sin(2 * math.pi * (root * mult + det) * self.t + self.rng.uniform(0, 6))
        air = self.band(self.noise(1.0), 300, 1200, order=2) * (0.5 + 0.5 * np.sin(2 * math.pi * 0.1 * self.t))
        return out + 0.5 * air

    def thunder(self) -> np.ndarray:
        out = np.zeros((2, self.n))
        for f, d in zip(self.tl.flashes, self.tl.thunder_delays,
                        strict=True):
            start = f + d
            a = int(start * RATE)
            if a >= self.n - 100:
                continue
            m = self.n - a
            tt = np.arange(m) / RATE
            env = (1 - np.exp(-tt / 0.03)) * np.exp(-tt / 1.6) * (1 + 0.5 * np.sin(2 * math.pi * 1.7 * tt) ** 2)
            rumble = self.band(self.noise(2.0)[:, :m], 25, 260) * env
            crack = self.band(self.noise(0.0)[:, :m], 400, 5000) * np.exp(-tt / 0.08) * 0.6
            out[:, a:] += rumble * 2.5 + crack
        return out

    def music(self, cues: Cues) -> np.ndarray:
        tempo = float(np.clip(cues.tempo, 50, 160))
        beat = 60.0 / tempo
        root = 220.0 * 2 ** (int(self.rng.integers(-5, 5)) / 12)
        if cues.mood == "minor":
            scale, progression = [0, 2, 3, 5, 7, 8, 10], [0, 5, 2, 6]  # i VI III VII
        else:
            scale, progression = [0, 2, 4, 5, 7, 9, 11], [0, 4, 5, 3]  # I V vi IV

        def note(degree: int) -> float:
            octave, d = divmod(degree, 7)
            return root * 2 ** ((scale[d] + 12 * octave) / 12)

        out = np.zeros((2, self.n))
        bar = 4 * beat
        dur = self.n / RATE
        k = 0
        while k * bar < dur:
            chord = [progression[k % 4] + j for j in (0, 2, 4)]
            a, b = int(k * bar * RATE), min(self.n, int((k + 1) * bar * RATE) + int(0.2 * RATE))
            tt = np.arange(b - a) / RATE
            env = np.minimum(1, tt / 0.4) * np.exp(-tt / (bar * 1.5))
            pad = np.zeros(b - a)
            for deg in chord:
                f = note(deg) / 2
                for h in range(1, 6):  # soft saw
                    pad += np.sin(2 * math.pi * f * h * tt * (1 + 0.002 * (h % 2))) / h ** 1.6
            out[:, a:b] += 0.25 * self.pan(pad * env, 0.0)
            for s in range(8):  # eighth-note arpeggio
                st = k * bar + s * beat / 2
                if st >= dur:
                    break
                f = note(chord[(s * 2 + s // 4) % 3] + 7)
                m = min(int(0.6 * RATE), self.n - int(st * RATE))
                t2 = np.arange(m) / RATE
                pl = (np.sin(2 * math.pi * f * t2) + 0.3 * np.sin(4 * math.pi * f * t2)) * np.exp(-t2 / 0.18)
                pl *= np.minimum(1, t2 / 0.004)
                out[:, int(st * RATE):int(st * RATE) + m] += 0.22 * self.pan(pl, 0.5 * math.sin(s))
            if tempo >= 100:
                for s in range(4):
                    st = int((k * bar + s * beat) * RATE)
                    m = min(int(0.3 * RATE), self.n - st)
                    if m <= 0:
                        break
                    t2 = np.arange(m) / RATE
                    kick = np.sin(2 * math.pi * (50 * t2 + 70 * 0.04 * (1 - np.exp(-t2 / 0.04)))) * np.exp(-t2 / 0.12)
                    out[:, st:st + m] += 0.5 * kick
            k += 1
        bass = np.zeros(self.n)
        for kk in range(k):
            a, b = int(kk * bar * RATE), min(self.n, int((kk + 1) * bar * RATE))
            tt = np.arange(b - a) / RATE
            bass[a:b] = np.sin(2 * math.pi * note(progression[kk % 4]) / 4 * tt) * np.minimum(1, tt / 0.05)
        return out + 0.3 * bass[None, :]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x ** 2)) + 1e-12)


def choose_layers(cues: Cues) -> list[str]:
    layers = [s for s in cues.sounds]
    if not [s for s in layers if s != "thunder"]:
        layers += list(SCENE_SOUNDS.get(cues.scene, ("wind", "music")))
    if "thunder" in layers and "rain" not in layers:
        layers.append("rain")
    if "lightning" in cues.ambient and "thunder" not in layers:
        layers.append("thunder")
    return list(dict.fromkeys(layers))


def soundscape(cues: Cues, duration: float, seed: int, timeline: Timeline | None = None) -> np.ndarray:
    """A (2, duration * 48000) float32 stereo soundscape at -16 LUFS, true peak at most -2 dBFS, below 15 kHz."""
    timeline = timeline or make_timeline(cues, duration, seed)
    n = int(round(duration * RATE))
    synth = _Synth(n, seed, timeline)
    mix = np.zeros((2, n))
    for name in choose_layers(cues):
        layer = synth.music(cues) if name == "music" else getattr(synth, name)()
        if name == "thunder":
            if not timeline.flashes:
                continue
            layer = layer / max(np.abs(layer).max(), 1e-9) * 0.5  # thunder's level is relative to its peak
        else:
            layer = layer / _rms(layer) * 0.1
        mix += layer * 10 ** (LEVELS_DB.get(name, -6.0) / 20)
    speech = speak(cues.dialogue)
    if speech is not None:
        m = min(n - int(0.4 * RATE), speech.shape[0])
        if m > 0:
            mix *= 0.55  # duck the bed under the voice
            s = speech[:m] / _rms(speech[:m]) * 0.12
            mix[:, int(0.4 * RATE):int(0.4 * RATE) + m] += s[None, :]
    fade_in, fade_out = int(0.3 * RATE), int(0.6 * RATE)
    env = np.ones(n)
    env[:fade_in] = 0.5 - 0.5 * np.cos(np.linspace(0, math.pi, fade_in))
    env[n - fade_out:] = 0.5 + 0.5 * np.cos(np.linspace(0, math.pi, fade_out))
    mix *= env[None, :]
    # AAC drops what is above ~16 kHz; left in, that band's removal reshapes sharp crackles and speech onsets
    # into peaks well above the limited ones. Band-limited here, the limiter sees the peaks the decoder will.
    mix = signal.sosfiltfilt(signal.butter(8, AAC_BAND_HZ, btype="low", fs=RATE, output="sos"), mix, axis=-1)
    return normalise(mix.astype(np.float32), TARGET_LUFS, PEAK_DBTP, RATE)


def espeak_argv(exe: str, wav: Path) -> list[str]:
    """espeak-ng's command line: options only. The words go on stdin, so no user text is ever read as
    an option (`-f FILE` would speak a file) or a path."""
    return [exe, "-w", str(wav), "-s", "155", "--stdin"]


def speech_text(lines: tuple[str, ...]) -> bytes:
    """The dialogue as espeak-ng reads it on stdin: one line, control characters dropped."""
    text = " ... ".join(lines)
    return "".join(ch if ch.isprintable() else " " for ch in text).encode("utf-8", "replace")


def speak(lines: tuple[str, ...]) -> np.ndarray | None:
    """Quoted dialogue spoken by espeak-ng (mono float at 48 kHz), or None (logged) when it is not installed."""
    if not lines:
        return None
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        log.info("preview: dialogue %r not spoken: espeak-ng is not installed", " / ".join(lines))
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        try:
            subprocess.run(espeak_argv(exe, path), input=speech_text(lines), check=True, timeout=30,
                           capture_output=True)
            with wave.open(str(path), "rb") as w:
                rate, width, ch = w.getframerate(), w.getsampwidth(), w.getnchannels()
                data = np.frombuffer(w.readframes(w.getnframes()), dtype={1: np.uint8, 2: np.int16}[width])
        except (OSError, subprocess.SubprocessError, wave.Error, KeyError) as exc:
            log.warning("preview: dialogue not spoken: %s", exc)
            return None
    x = data.astype(np.float64).reshape(-1, ch).mean(axis=1)
    x = (x - 128) / 128 if width == 1 else x / 32768
    g = math.gcd(RATE, rate)
    return signal.resample_poly(x, RATE // g, rate // g)
