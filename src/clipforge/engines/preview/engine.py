"""The preview engine: CPU only, no weights, deterministic per seed."""

from __future__ import annotations

import logging
import queue
import threading
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


def prefetch(frames: Iterator[np.ndarray], n: int, on_step: StepCallback, depth: int = 3) -> Iterator[np.ndarray]:
    """Yield `frames`, rendered a few ahead in a helper thread so rendering overlaps the caller's encoding
    (OpenCV and NumPy release the GIL). `on_step` runs in the caller's thread, once per frame; when it raises
    (Cancelled), the helper stops and the exception propagates."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for frame in frames:
                while not stop.is_set():
                    try:
                        q.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=produce, name="preview-render", daemon=True)
    thread.start()
    try:
        for i in range(n):
            item = q.get()
            if item is done:
                raise RuntimeError(f"preview renderer stopped after {i} of {n} frames")
            if isinstance(item, BaseException):
                raise item
            on_step(i + 1, n, "rendering")
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def thumbnail_frame(n: int, fps: int, timeline: Timeline, morph: bool) -> int:
    """The frame to show for the clip: a morph's first frame (the input, not a ghosted in-between), else the
    frame nearest the middle that no lightning flash lights up."""
    if morph:
        return 0
    calm = [i for i in range(n) if timeline.flash(i / fps) < 0.01]
    return min(calm, key=lambda i: (abs(i - n // 2), i)) if calm else n // 2


class PreviewEngine(Engine):
    name = "preview"
    options = ()  # no settings: `[engines.preview]` stays empty

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
                            info={"engine": self.name, "camera": cues.camera, "scene": cues.scene},
                            thumbnail_frame=thumbnail_frame(n, request.fps, timeline, request.tail_image is not None))

    def _i2v(self, request: EngineRequest, cues: Cues, timeline: Timeline,
             on_step: StepCallback) -> Iterator[np.ndarray]:
        n, w, h = request.num_frames, request.width, request.height
        first = _to_rgb_array(request.image, w, h)
        tail = _to_rgb_array(request.tail_image, w, h) if request.tail_image is not None else None
        yield from prefetch(animate_image(first, tail, cues, timeline, n, request.fps, request.spec.seed), n, on_step)

    def _t2v(self, request: EngineRequest, cues: Cues, timeline: Timeline,
             on_step: StepCallback) -> Iterator[np.ndarray]:
        n = request.num_frames
        yield from prefetch(render_scene(cues, request.width, request.height, n, request.spec.seed, timeline,
                                         request.fps), n, on_step)
