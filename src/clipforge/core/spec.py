"""What a generation asks for, independent of the dialect it arrived in."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

FPS = 24
DURATIONS = (5, 10)  # the AIML dialect's (Kling's) clip lengths, seconds
OPENAI_DURATIONS = (4, 5, 8, 10, 12)  # the OpenAI dialect's: the SDK's 4/8/12 and the AIML 5/10
ASPECT_RATIOS = {"16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1)}
T2V_SIZES = {"16:9": (1920, 1080), "9:16": (1080, 1920), "1:1": (1080, 1080)}
MAX_LONG_SIDE = 1920
MAX_PROMPT_CHARS = 2500


@dataclass(frozen=True)
class GenerationSpec:
    """Dialect-neutral parameters of one generation.

    `image` and `tail_image` are artifact keys of input images already checked and stored by the
    api; engines read them through the artifact store.
    """

    prompt: str
    duration: int = 5
    aspect_ratio: str | None = None
    negative_prompt: str | None = None
    cfg_scale: float = 0.5
    generate_audio: bool = True
    seed: int = 0
    image: str | None = None
    tail_image: str | None = None
    size: tuple[int, int] | None = None  # explicit (width, height), e.g. from OpenAI's `size`
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return "i2v" if self.image else "t2v"

    @property
    def num_frames(self) -> int:
        return self.duration * FPS

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size) if self.size else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GenerationSpec:
        d = dict(d)
        if d.get("size"):
            d["size"] = tuple(d["size"])
        return cls(**d)


def even(n: float) -> int:
    """Round to the nearest even integer >= 2 (H.264 with yuv420p needs even sides)."""
    return max(2, int(round(n / 2.0)) * 2)


def output_size(spec: GenerationSpec, image_size: tuple[int, int] | None) -> tuple[int, int]:
    """The (width, height) of the output video, per the contract.

    i2v keeps the input image's aspect with the long side capped at 1920 and even sides;
    t2v uses the aspect ratio's native 1080p size; an explicit size wins.
    """
    if spec.size:
        return even(spec.size[0]), even(spec.size[1])
    if image_size is not None:
        w, h = image_size
        scale = min(1.0, MAX_LONG_SIDE / max(w, h))
        return even(w * scale), even(h * scale)
    return T2V_SIZES[spec.aspect_ratio or "16:9"]
