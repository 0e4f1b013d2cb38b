"""Ambient source-space motion: each frame is drawn from the pristine canvas, never from the frame before."""

from __future__ import annotations

import numpy as np

from clipforge.engines.preview.ambient import Ambient
from clipforge.engines.preview.events import make_timeline
from clipforge.engines.preview.prompt import parse_prompt
from clipforge.engines.preview.scenes import paint_scene


def test_a_fire_frame_does_not_depend_on_the_frames_before_it():
    """The fire's box once remapped the canvas its previous frame had written: its displacement compounded
    and a smeared rectangle grew around the flames' base over the clip."""
    cues = parse_prompt('a campfire at night, "we made it"')
    w, h, n = 320, 180, 60
    still, fire, _ = paint_scene(cues, w, h, seed=0)
    assert fire is not None
    ambient = Ambient(("fire", "clouds"), w, h, n, 24, 0, make_timeline(cues, n / 24, 0),
                      regions={"fire": fire, "sky": np.zeros((h, w), np.float32)})
    assert [kind for kind, _ in ambient.fields] == ["fire"]
    src = still.copy()
    running = src.copy()
    for i in range(1, n):
        ambient.apply_source(i, src, running)
    fresh = src.copy()
    ambient.apply_source(n - 1, src, fresh)
    assert np.array_equal(running, fresh), np.abs(running.astype(int) - fresh).max()


def sun_disc(frame: np.ndarray) -> tuple[int, float]:
    """The painted sun's area in pixels and its roundness (4πA/P², 1 for a perfect disc)."""
    import cv2

    bright = (frame.astype(np.int32).sum(axis=2) > 600).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(bright)
    assert n > 1, "no sun"
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    [contour], _ = cv2.findContours((labels == k).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    area = int(stats[k, cv2.CC_STAT_AREA])
    return area, 4 * np.pi * area / cv2.arcLength(contour, True) ** 2


def test_drifting_clouds_leave_a_painted_sun_whole():
    """The sky's drift once started inside the sun's disc (where the sky mask ended), shearing it into a bitten
    shape with a smeared tail by the last frame (seen in a 'lighthouse at dusk' clip of the OpenAI example)."""
    from engines.preview.pictures import generate

    _, frames = generate("a lighthouse at dusk", seed=4086476283, audio=False, size=(640, 360))
    first, last = sun_disc(frames[0]), sun_disc(frames[-1])
    assert first[1] > 0.85 and last[1] > 0.85, (first, last)  # round at the start and the end
    assert 1.0 < last[0] / first[0] < 1.5, (first, last)  # grown only by the camera's push-in
