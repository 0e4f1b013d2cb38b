"""What the README's table says the preview engine draws from a prompt, measured on the frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from clipforge.engines.preview.events import make_timeline
from clipforge.engines.preview.prompt import parse_prompt
from engines.preview.pictures import generate, landscape

SIZE = (320, 180)
STORM = "a lighthouse on a rock by the sea, camera pans left, thunder and lightning"
CAMPFIRE = 'a campfire at night, "we made it"'


def luma(frame: np.ndarray) -> np.ndarray:
    return frame.astype(np.float32).mean(axis=2)


def flame_mask(frame: np.ndarray) -> np.ndarray:
    """Bright, saturated orange-to-yellow pixels."""
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)
    return (hsv[..., 0] < 30) & (hsv[..., 1] > 110) & (hsv[..., 2] > 150)


@pytest.mark.parametrize(("seed", "size"), [(0, SIZE), (1, SIZE), (2, (180, 320)), (3, (240, 240))])
def test_a_campfire_at_night_shows_a_flickering_fire_under_a_dark_sky(seed: int, size: tuple[int, int]):
    _, frames = generate(CAMPFIRE, seed=seed, audio=False, size=size)
    h, w = frames[0].shape[:2]
    fire = flame_mask(frames[30])
    ys, xs = np.nonzero(fire)
    assert fire.mean() > 0.01, fire.mean()  # a fire, not a few embers
    assert 0.3 * w < xs.mean() < 0.7 * w and ys.mean() > 0.5 * h  # on the ground, near the middle
    assert luma(frames[30])[: h // 4].mean() < 60  # night
    diffs = np.abs(np.diff(np.stack([luma(f) for f in frames[30:90]]), axis=0)).mean(axis=0)
    assert diffs[fire].mean() > 2.0 and diffs[fire].mean() > 4 * diffs[~fire].mean()  # the fire flickers


def test_no_fire_is_drawn_unless_named():
    _, frames = generate("a quiet meadow at night", audio=False, size=SIZE)
    assert flame_mask(frames[30]).mean() < 0.001


@pytest.mark.parametrize("seed", [0, 3])
def test_thunder_and_lightning_flash_with_a_bolt_under_a_dark_storm_sky(seed: int):
    cues = parse_prompt(STORM)
    flashes = make_timeline(cues, 5, seed).flashes
    assert cues.overcast and flashes
    _, frames = generate(STORM, seed=seed, audio=False, size=SIZE)
    sky = slice(0, int(0.4 * SIZE[1]))
    calm = frames[10][sky]
    hsv = cv2.cvtColor(calm, cv2.COLOR_RGB2HSV)
    assert luma(calm).mean() < 120 and hsv[..., 1].mean() < 60  # grey, not blue
    assert luma(calm).max() < 200  # no sun
    at = int(round(flashes[0] * 24)) + 1
    lit = frames[at][sky]
    assert luma(lit).mean() > luma(calm).mean() + 30  # the flash lights the sky
    bolt = (lit.min(axis=2) > 235).mean()
    assert bolt > 0.001, bolt  # a white bolt in the sky
    assert (calm.min(axis=2) > 235).mean() == 0


def test_lightning_over_an_input_image_flashes_with_a_bolt():
    cues = parse_prompt(STORM)
    flash = make_timeline(cues, 5, 0).flashes[0]
    _, frames = generate(STORM, seed=0, image=landscape(*SIZE), audio=False, size=SIZE)
    at = int(round(flash * 24)) + 1
    assert luma(frames[at]).mean() > luma(frames[at - 6]).mean() + 25


def test_rain_and_storms_hide_the_sun_and_stars_while_clear_skies_keep_them():
    def brightest_sky(prompt: str) -> float:
        _, frames = generate(prompt, audio=False, size=SIZE)
        return float(luma(frames[5])[: SIZE[1] // 3].max())

    assert brightest_sky("a sunny sky over the hills") > 230  # the sun
    assert brightest_sky("a stormy sky over the hills") < 200
    assert brightest_sky("hills at night") > 180  # stars
    assert brightest_sky("hills at night in the rain") < 180


def _eighth_note_seconds(prompt: str) -> float:
    """The music bed's note spacing, from the autocorrelation of its onset envelope."""
    from scipy import signal

    from clipforge.engines.preview.audio import _Synth

    cues = parse_prompt(prompt)
    music = _Synth(8 * 48_000, 0, make_timeline(cues, 8, 0)).music(cues)[0]
    attacks = signal.sosfilt(signal.butter(4, 1500, btype="high", fs=48_000, output="sos"), music)
    env = signal.resample_poly(np.abs(attacks), 1, 48)  # 1 kHz
    env = np.maximum(np.diff(np.convolve(env, np.ones(10) / 10, "same")), 0)
    ac = np.correlate(env, env, "full")[len(env) - 1:]
    lo, hi = 150, 700  # 0.15 .. 0.7 s
    return (lo + int(np.argmax(ac[lo:hi]))) / 1000


def test_music_tempo_and_mode_follow_mood_words():
    happy, sad = parse_prompt("happy piano music"), parse_prompt("sad piano music")
    assert (happy.mood, sad.mood) == ("major", "minor")
    assert _eighth_note_seconds("happy piano music") == pytest.approx(30 / happy.tempo, abs=0.02)
    assert _eighth_note_seconds("sad piano music") == pytest.approx(30 / sad.tempo, abs=0.02)


def test_a_fire_under_drifting_clouds_leaves_no_seam_in_the_sky():
    _, frames = generate("a campfire on the beach at sunset", seed=5, audio=False, size=(640, 360))
    sky = frames[100][: int(0.45 * 360)].astype(np.float32)
    rows = np.abs(np.diff(sky, axis=0)).mean(axis=(1, 2))  # how much each row differs from the next
    assert rows.max() < 3 * np.median(rows) + 1.5, (rows.max(), np.median(rows))
