"""A fixed-cost engine for benchmarks and tests: known frames, a sine tone, a set time per step.

Not routed by default. Config: `steps` (default 4), `step_seconds` (default 0.0), `fail` (a message to
raise as EngineError). Frames are a flat colour from the seed with a bar that moves across them, so
tests can check frame content; the first frame reproduces the input image when one is given.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from clipforge.core.errors import EngineError
from clipforge.engines.base import Engine, EngineOutput, EngineRequest, StepCallback, no_progress
from clipforge.engines.options import Option


class FixedEngine(Engine):
    name = "fixed"
    options = (
        Option("steps", (int,), help="step callbacks per job (default 4)"),
        Option("step_seconds", (float,), help="sleep per step (default 0)"),
        Option("fail", (str,), help="raise EngineError with this message"),
    )

    def generate(self, request: EngineRequest, on_step: StepCallback = no_progress) -> EngineOutput:
        steps = int(self.config.get("steps", 4))
        for i in range(steps):
            time.sleep(float(self.config.get("step_seconds", 0.0)))
            on_step(i + 1, steps, "denoising")
        if self.config.get("fail"):
            raise EngineError(str(self.config["fail"]))
        n, w, h = request.num_frames, request.width, request.height
        audio = None
        if request.spec.generate_audio:
            t = np.arange(request.spec.duration * 48_000) / 48_000
            audio = (0.25 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        return EngineOutput(self._frames(request), n, w, h, request.fps, audio, 48_000)

    def _frames(self, request: EngineRequest) -> Iterator[np.ndarray]:
        w, h, n = request.width, request.height, request.num_frames
        rng = np.random.default_rng(request.spec.seed)
        colour = rng.integers(40, 200, size=3, dtype=np.uint8)
        first = (np.asarray(request.image.resize((w, h))) if request.image is not None
                 else np.broadcast_to(colour, (h, w, 3)).copy())
        for i in range(n):
            frame = first.copy() if i == 0 else np.broadcast_to(colour, (h, w, 3)).copy()
            if i:
                x = int((w - 8) * i / max(n - 1, 1))
                frame[:, x:x + 8] = 255
            yield frame
