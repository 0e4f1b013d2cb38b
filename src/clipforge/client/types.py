"""Typed results: plain frozen dataclasses built from the AIML dialect's JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

IN_FLIGHT = frozenset({"queued", "generating"})
SUCCEEDED = frozenset({"completed", "succeeded"})


@dataclass(frozen=True)
class GenerationError:
    name: str
    message: str


@dataclass(frozen=True)
class Generation:
    """One generation as last seen. `status` is the server's (queued, generating, completed, error)."""

    id: str
    status: str
    model: str | None = None
    progress: int | None = None
    stage: str | None = None
    queue_position: int | None = None
    created: int | None = None
    video_url: str | None = None
    thumbnail_url: str | None = None
    duration_seconds: float | None = None
    has_audio: bool | None = None
    width: int | None = None
    height: int | None = None
    file_size: int | None = None
    seed: int | None = None
    expires_at: int | None = None
    error: GenerationError | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """Finished one way or the other (anything but queued or generating, as hosted clients treat it)."""
        return self.status not in IN_FLIGHT

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCEEDED

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> Generation:
        output, video = body.get("output") or {}, body.get("video") or {}
        error = body.get("error")
        if isinstance(error, dict):
            error = GenerationError(str(error.get("name") or error.get("code") or "Error"),
                                    str(error.get("message") or ""))
        elif error:
            error = GenerationError("Error", str(error))
        return cls(
            id=str(body.get("id") or body.get("generation_id") or ""), status=str(body.get("status") or ""),
            model=body.get("model"), progress=body.get("progress"), stage=body.get("stage"),
            queue_position=body.get("queue_position"), created=body.get("created"),
            video_url=video.get("url") or output.get("video_url"), thumbnail_url=output.get("thumbnail_url"),
            duration_seconds=output.get("duration_seconds"), has_audio=output.get("has_audio"),
            width=output.get("width"), height=output.get("height"), file_size=video.get("file_size"),
            seed=body.get("seed"), expires_at=body.get("expires_at"), error=error or None, raw=body,
        )


@dataclass(frozen=True)
class GenerationPage:
    """One page of `list()`; pass `next_cursor` as `after` for the next."""

    data: list[Generation]
    has_more: bool
    next_cursor: str | None

    def __iter__(self):  # noqa: ANN204 - an iterator of Generation
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> GenerationPage:
        return cls([Generation.from_dict(d) for d in body.get("data") or []], bool(body.get("has_more")),
                   body.get("next_cursor"))
