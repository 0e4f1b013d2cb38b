"""The AIML dialect: `/v2/video/generations` and its aliases (the hosted Kling 2.6 Pro contract)."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response

from clipforge.api import params
from clipforge.api.auth import require_key
from clipforge.api.services import Services, services
from clipforge.api.submit import ImageInput, Submission
from clipforge.core.errors import InvalidInput
from clipforge.core.job import Job, JobStatus

log = logging.getLogger(__name__)

CREATE_PATHS = ("/v2/video/generations", "/v1/video/generations", "/video/generations",
                "/v2/generate/video/kling/generation")
KNOWN_FIELDS = {"model", "prompt", "image_url", "tail_image_url", "last_image_url", "duration", "aspect_ratio",
                "negative_prompt", "cfg_scale", "generate_audio", "seed", "provider", "webhook_url"}

AIML_STATUS = {JobStatus.QUEUED: "queued", JobStatus.RUNNING: "generating", JobStatus.COMPLETED: "completed",
               JobStatus.FAILED: "error", JobStatus.CANCELLED: "error", JobStatus.EXPIRED: "error"}

router = APIRouter(tags=["aiml"])


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput("body", f"body: is not valid JSON ({exc})", "json") from None
    if not isinstance(body, dict):
        raise InvalidInput("body", "body: must be a JSON object with at least 'model' and 'prompt'", "json")
    return body


def image_input(body: dict[str, Any], *fields: str) -> ImageInput | None:
    for field in fields:
        value = body.get(field)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(field, f"{field}: must be an http(s) URL, a data: URI or base64 image data", "type")
        return ImageInput(field, ref=value.strip())
    return None


def parse_create(body: dict[str, Any], owner: str) -> Submission:
    unknown = set(body) - KNOWN_FIELDS
    if unknown:
        log.debug("ignoring unknown fields: %s", ", ".join(sorted(unknown)))
    model = params.text(body, "model", required=True, max_chars=200)
    image = image_input(body, "image_url")
    tail = image_input(body, "tail_image_url", "last_image_url")
    if tail is not None and image is None:
        raise InvalidInput(tail.field, f"{tail.field}: needs image_url as well (the first frame)", "missing")
    spec = {
        "prompt": params.text(body, "prompt", required=True),
        "negative_prompt": params.text(body, "negative_prompt", required=False),
        "duration": params.duration(body.get("duration")),
        "aspect_ratio": params.aspect_ratio(body.get("aspect_ratio")),
        "cfg_scale": params.number_in(body.get("cfg_scale"), "cfg_scale", 0.0, 1.0, 0.5),
        "generate_audio": params.flag(body.get("generate_audio"), "generate_audio", True),
        "seed": params.seed(body.get("seed")),
        "seed_given": body.get("seed") is not None,
    }
    return Submission(owner=owner, model=model, spec=spec, image=image, tail_image=tail)


def usage(job: Job) -> dict[str, Any]:
    spec = job.params.get("spec", {})
    return {"usage": {"credits_used": 0, "duration_seconds": spec.get("duration"),
                      "input_tokens": 0, "output_tokens": 0, "total_tokens": 0}}


def generation_view(job: Job, request: Request, svc: Services, position: int | None = None) -> dict[str, Any]:
    """The poll body: current enum in `status`, `video.url` and the seed's `output.*` kept."""
    out = job.outputs or {}
    done = job.status == JobStatus.COMPLETED
    video_url = svc.media_url(request, out.get("video"), job) if done else None
    error = job.error
    if job.status == JobStatus.EXPIRED:
        error = {"name": "Expired", "message": "This generation's outputs expired and were deleted; "
                 "generate it again (the same seed reproduces it)."}
    return {
        "id": job.id,
        "object": "video.generation",
        "model": job.model,
        "created": int(job.created_at),
        "status": AIML_STATUS[job.status],
        "progress": job.progress,
        "stage": job.stage,
        "queue_position": position,
        "video": {"url": video_url, "content_type": "video/mp4", "file_name": "output.mp4",
                  "file_size": out.get("file_size")} if done else None,
        "output": {"video_url": video_url, "thumbnail_url": svc.media_url(request, out.get("thumbnail"), job),
                   "duration_seconds": job.params["spec"]["duration"], "has_audio": out.get("has_audio"),
                   "width": out.get("width"), "height": out.get("height")} if done else None,
        "error": error,
        "seed": job.params["spec"].get("seed"),
        "expires_at": int(job.expires_at) if job.expires_at else None,
        "meta": usage(job),
    }


def poll_response(job: Job, request: Request, response: Response, svc: Services) -> dict[str, Any]:
    position = svc.store.queue_position(job) if job.status == JobStatus.QUEUED else None
    if not job.terminal:
        response.headers["Retry-After"] = str(svc.settings.poll_retry_after_seconds)
    return generation_view(job, request, svc, position)


async def create_generation(request: Request, owner: str = Depends(require_key),
                            svc: Services = Depends(services)) -> dict[str, Any]:
    submission = parse_create(await json_body(request), owner)
    submission.idempotency_key = request.headers.get("idempotency-key")
    job, _ = await svc.submitter.submit(submission)
    return {"id": job.id, "object": "video.generation", "status": "queued" if job.status == JobStatus.QUEUED
            else AIML_STATUS[job.status], "model": job.model, "created": int(job.created_at), "meta": usage(job)}


async def poll_by_query(request: Request, response: Response, generation_id: str | None = None,
                        owner: str = Depends(require_key), svc: Services = Depends(services)) -> dict[str, Any]:
    if not generation_id:
        raise InvalidInput("generation_id", "generation_id: query parameter is required", "missing")
    return poll_response(svc.store.get(generation_id, owner), request, response, svc)


@router.get("/v2/video/generations/{generation_id:path}")
async def poll_by_path(generation_id: str, request: Request, response: Response,
                       owner: str = Depends(require_key), svc: Services = Depends(services)) -> dict[str, Any]:
    return poll_response(svc.store.get(generation_id, owner), request, response, svc)


def attach_router(app: FastAPI) -> None:
    for path in CREATE_PATHS:
        router.add_api_route(path, create_generation, methods=["POST"])
        router.add_api_route(path, poll_by_query, methods=["GET"])
    app.include_router(router)
