"""Image conditions of the ltx2 engine, placed on pixel frames as Lightricks' reference does.

diffusers 0.42.1's `LTX2ConditionPipeline` reads a condition's `index` as a *latent* index: a
keyframe at latent k sits on pixel frame (k-1)*8+1, so `index=-1` pins the tail image to pixel
frame 113 of a 121-frame clip and 6 generated frames follow it. Lightricks' keyframe conditioning
(`VideoConditionByKeyframeIndex`) takes a pixel frame. `PixelConditionPipeline` keeps diffusers'
mechanics (first frame: latent 0 overwritten and kept clean; other frames: appended keyframe tokens)
and only moves each keyframe's positional coordinates to the pixel frame its condition names.

Imports diffusers at import time: import it only where torch is wanted (the engine's load).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from diffusers.pipelines.ltx2 import LTX2ConditionPipeline, LTX2VideoCondition


@dataclass
class PixelCondition(LTX2VideoCondition):
    """A one-image condition on pixel frame `pixel_frame` (0 = the first frame)."""

    pixel_frame: int = 0


def pixel_condition(image: Any, pixel_frame: int, crf: int | None, temporal_ratio: int = 8) -> PixelCondition:
    """The condition that pins `image` on `pixel_frame`; its latent `index` is the latent frame that
    covers that pixel (0 for the first frame), which decides between overwrite and keyframe."""
    index = 0 if pixel_frame == 0 else max(1, math.ceil(pixel_frame / temporal_ratio))
    return PixelCondition(frames=image, index=index, strength=1.0, crf=crf, pixel_frame=pixel_frame)


class PixelConditionPipeline(LTX2ConditionPipeline):
    """`LTX2ConditionPipeline` whose keyframe tokens sit on their condition's pixel frame."""

    def preprocess_conditions(self, conditions: Any = None, height: int = 512, width: int = 768,
                              num_frames: int = 121, device: Any = None) -> Any:
        # prepare_latents calls this, then `_prepare_keyframe_coords` once per non-first condition,
        # in the same order: queue those conditions' pixel frames for it.
        items = [conditions] if isinstance(conditions, LTX2VideoCondition) else list(conditions or [])
        latent_frames = (num_frames - 1) // self.vae_temporal_compression_ratio + 1
        resolved = [(c, c.index % latent_frames if c.index < 0 else c.index) for c in items]
        self._keyframe_pixels = [getattr(c, "pixel_frame", None) for c, index in resolved
                                 if 0 < index < latent_frames]
        return super().preprocess_conditions(items, height, width, num_frames, device=device)

    def _prepare_keyframe_coords(self, keyframe_latent_num_frames: int, keyframe_latent_height: int,
                                 keyframe_latent_width: int, pixel_frame_idx: int, num_pixel_frames: int,
                                 fps: float, device: Any) -> Any:
        queued = getattr(self, "_keyframe_pixels", None)
        if queued:
            wanted = queued.pop(0)
            if wanted is not None:
                pixel_frame_idx = wanted
        return super()._prepare_keyframe_coords(keyframe_latent_num_frames, keyframe_latent_height,
                                                keyframe_latent_width, pixel_frame_idx, num_pixel_frames, fps,
                                                device)
