"""The engine interface: load once, generate with a step callback, unload.

An engine turns an `EngineRequest` into frames and (optionally) audio. It never touches the job
store, HTTP or files: the worker feeds it decoded images and encodes what it returns.
Cancellation and progress both flow through `on_step`: an engine calls it after every unit of
work; it raises `clipforge.core.errors.Cancelled` when the job's cancel flag is set, and the
engine lets that exception propagate (diffusers engines also set `pipe._interrupt`).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from clipforge.core.spec import FPS, GenerationSpec
from clipforge.engines.options import Option, check_engine_config

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image


class StepCallback(Protocol):
    def __call__(self, step: int, total: int, stage: str) -> None:
        """Report that `step` of `total` units of `stage` are done; may raise Cancelled."""


def no_progress(step: int, total: int, stage: str) -> None:
    """A StepCallback that ignores progress and never cancels."""


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str | None = None
    limits: dict[str, Any] = field(default_factory=dict)  # see clipforge.core.capabilities
    detail: str | None = None  # e.g. ltx2's memory estimate and offload plan (`clipforge models --verbose`)
    # The reason as the HTTP API may show it (no URL, host, address, path or exception text); None: the
    # API shows `reason` passed through clipforge.core.redact. `reason` itself is the operator's.
    public: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ready": self.ready, "reason": self.reason, "limits": self.limits}
        if self.detail:
            out["detail"] = self.detail
        if self.public:
            out["public_reason"] = self.public
        return out


@dataclass
class EngineRequest:
    """One generation, decoded: images are RGB, sizes are the output's."""

    spec: GenerationSpec
    width: int
    height: int
    image: Image.Image | None = None
    tail_image: Image.Image | None = None
    fps: int = FPS

    @property
    def num_frames(self) -> int:
        return self.spec.duration * self.fps


@dataclass
class EngineOutput:
    """What an engine made.

    `frames` yields `num_frames` arrays of shape (height, width, 3), dtype uint8, RGB; it may be a
    lazy iterator so long clips are never held in memory whole. `audio` is float32 in [-1, 1],
    shape (channels, samples), at `sample_rate`; the encoder resamples it and fits it to the
    video's length. `audio` is None when the request asked for no audio.
    """

    frames: Iterable[np.ndarray]
    num_frames: int
    width: int
    height: int
    fps: int = FPS
    audio: np.ndarray | None = None
    sample_rate: int = 48_000
    info: dict[str, Any] = field(default_factory=dict)
    thumbnail_frame: int | None = None  # the frame that shows the clip best (thumbnail, poster); None: the middle


class Engine(abc.ABC):
    """Base class of every engine. Subclasses set `name`, declare their settings in `options` and
    take their config in `__init__`. `options = None` (the default) leaves the table unchecked."""

    name: ClassVar[str]
    options: ClassVar[tuple[Option, ...] | None] = None
    hosted: ClassVar[bool] = False  # True: waits on a provider, so one worker may run many at once

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = dict(config or {})

    @classmethod
    def check_config(cls, table: str, config: dict[str, Any]) -> None:
        """ConfigError (one line) for a bad `[engines.<table>]` table: `serve`, `worker` and `models`
        call this at start. The default checks the keys and values against `options`; an engine with a
        more specific message for some mistake overrides this and says it first."""
        check_engine_config(table, cls.options, config)

    @classmethod
    def readiness(cls, config: dict[str, Any]) -> Readiness:
        """Whether this engine can run here with this config; cheap (no weights loaded)."""
        return Readiness(True)

    @classmethod
    def limits(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Spec fields this engine cannot honour: field -> None (never) or the list of accepted values.
        The api refuses such requests with a 400 (clipforge.core.capabilities)."""
        return {}

    def load(self) -> None:  # noqa: B027 - optional hook
        """Load weights; called once before the first generate."""

    @abc.abstractmethod
    def generate(self, request: EngineRequest, on_step: StepCallback = no_progress) -> EngineOutput:
        """Make one clip."""

    def unload(self) -> None:  # noqa: B027 - optional hook
        """Free memory."""

    def release_memory(self) -> None:  # noqa: B027 - optional hook
        """After a failed job: free what it left behind (e.g. the CUDA cache); stay loaded."""
