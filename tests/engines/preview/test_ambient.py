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
    still, fire = paint_scene(cues, w, h, seed=0)
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
