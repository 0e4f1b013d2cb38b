"""The job record shared by the store, the worker and the api."""

from __future__ import annotations

import enum
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


def new_job_id(model: str) -> str:
    """An opaque id shaped like the hosted service's: `<uuid>:<model-id>`."""
    return f"{uuid.uuid4()}:{model}"


def new_media_token() -> str:
    """The unguessable part of media URLs."""
    return secrets.token_urlsafe(24)


# What a finished job stores under `<media_token>/`, and all that `/media/<key>` may serve.
OUTPUT_FILES = ("output.mp4", "thumbnail.jpg", "spritesheet.jpg")
OUTPUT_KEY = re.compile(r"[A-Za-z0-9_-]{32}/(?:" + "|".join(re.escape(f) for f in OUTPUT_FILES) + ")")


def is_output_key(key: str) -> bool:
    """True for `<media_token>/<output file>` exactly: never an input image, a dot segment, an absolute
    path, an encoded or control character, or anything longer."""
    return OUTPUT_KEY.fullmatch(key) is not None


@dataclass
class Job:
    id: str
    owner: str
    model: str
    engine: str
    params: dict[str, Any]
    status: JobStatus = JobStatus.QUEUED
    progress: int = 0
    stage: str | None = None
    outputs: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    attempts: int = 0
    max_attempts: int = 3
    worker_id: str | None = None
    lease_expires_at: float | None = None
    cancel_requested: bool = False
    media_token: str = field(default_factory=new_media_token)
    idempotency_key: str | None = None
    request_hash: str | None = None
    webhook: dict[str, Any] | None = None
    remixed_from: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float = field(default_factory=time.time)
    expires_at: float | None = None

    @property
    def terminal(self) -> bool:
        return self.status.terminal
