"""A test engine that records every invocation (one JSON line per generate call) and makes a tiny clip.

Declared in a test models TOML as `class = "counting_engine:CountingEngine"` with `log = "/path"`;
worker subprocesses import it through PYTHONPATH (this folder). Config: `log` (required), `steps`
(default 1), `step_seconds` (default 0).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import numpy as np

from clipforge.engines.base import Engine, EngineOutput, EngineRequest, StepCallback, no_progress

SIZE, FRAMES = 64, 4


class CountingEngine(Engine):
    name = "counting"

    def generate(self, request: EngineRequest, on_step: StepCallback = no_progress) -> EngineOutput:
        record = {"prompt": request.spec.prompt, "seed": request.spec.seed, "pid": os.getpid(), "ts": time.time()}
        with open(self.config["log"], "a") as log:  # one short O_APPEND write: lines never interleave
            log.write(json.dumps(record) + "\n")
        steps = int(self.config.get("steps", 1))
        for i in range(steps):
            time.sleep(float(self.config.get("step_seconds", 0.0)))
            on_step(i + 1, steps, "denoising")
        return EngineOutput(self._frames(request.spec.seed), FRAMES, SIZE, SIZE, 24, None, 48_000)

    @staticmethod
    def _frames(seed: int) -> Iterator[np.ndarray]:
        colour = np.random.default_rng(seed).integers(40, 200, size=3, dtype=np.uint8)
        for i in range(FRAMES):
            frame = np.broadcast_to(colour, (SIZE, SIZE, 3)).copy()
            frame[:, i * 8:i * 8 + 8] = 255
            yield frame
