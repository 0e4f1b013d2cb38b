"""The preview engine: CPU only, no weights, deterministic per seed."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import cv2
import numpy as np

from clipforge.engines.base import Engine, EngineOutput, EngineRequest, StepCallback, no_progress
from clipforge.engines.preview.animate import animate_image
from clipforge.engines.preview.events import Timeline, make_timeline
from clipforge.engines.preview.prompt import Cues, parse_prompt
from clipforge.engines.preview.scenes import render_scene

log = logging.getLogger(__name__)


def _to_rgb_array(image, width: int, height: int) -> np.ndarray:  # noqa: ANN001 - PIL image
    arr = np.asarray(image.convert("RGB"))
    if arr.shape[:2] != (height, width):
        interp = cv2.INTER_AREA if arr.shape[1] > width else cv2.INTER_CUBIC
        arr = cv2.resize(arr, (width, height), interpolation=interp)
    return np.ascontiguousarray(arr, dtype=np.uint8)


class PreviewEngine(Engine):
    name = "preview"

    def generate(self, request: EngineRequest, on_step: StepCallback = no_progress) -> EngineOutput:
        from clipforge.engines.preview.audio import soundscape

        cues = parse_prompt(request.spec.prompt)
        n, w, h = request.num_frames, request.width, request.height
        audio = None
        timeline = make_timeline(cues, request.spec.duration, request.spec.seed, land=request.tail_image is not None)
        if request.spec.generate_audio:
            audio = soundscape(cues, request.spec.duration, request.spec.seed, timeline)
        if request.image is not None:
            frames = self._i2v(request, cues, timeline, on_step)
        else:
            frames = self._t2v(request, cues, timeline, on_step)
        return EngineOutput(frames, n, w, h, request.fps, audio, 48_000,
                            info={"engine": self.name, "camera": cues.camera, "scene": cues.scene})

    def _i2v(self, request: EngineRequest, cues: Cues, timeline: Timeline,
             on_step: StepCallback) -> Iterator[np.ndarray]:
        n, w, h = request.num_frames, request.width, request.height
        first = _to_rgb_array(request.image, w, h)
        tail = _to_rgb_array(request.tail_image, w, h) if request.tail_image is not None else None
        for i, frame in enumerate(animate_image(first, tail, cues, timeline, n, request.fps, request.spec.seed)):
            on_step(i + 1, n, "rendering")
            yield frame

    def _t2v(self, request: EngineRequest, cues: Cues, timeline: Timeline,
             on_step: StepCallback) -> Iterator[np.ndarray]:
        n = request.num_frames
        for i, frame in enumerate(render_scene(cues, request.width, request.height, n, request.spec.seed, timeline,
                                               request.fps)):
            on_step(i + 1, n, "rendering")
            yield frame
