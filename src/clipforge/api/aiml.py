"""The AIML dialect: `/v2/video/generations` and its aliases (the hosted Kling 2.6 Pro contract)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from clipforge.api import params
from clipforge.api.async_store import off_loop
from clipforge.api.auth import require_key, require_policy
from clipforge.api.polls import serve_poll_lean, serve_query_poll_lean
from clipforge.api.services import Services, services
from clipforge.api.submit import ImageInput, Submission
from clipforge.api.webhooks import webhook_from_body
from clipforge.core.errors import InvalidInput, NotFound
from clipforge.core.job import Job, JobStatus
from clipforge.core.keys import KeyPolicy
from clipforge.jobs.eta import QueueEstimate, queue_estimate

log = logging.getLogger(__name__)

CREATE_PATHS = ("/v2/video/generations", "/v1/video/generations", "/video/generations",
                "/v2/generate/video/kling/generation")
KNOWN_FIELDS = {"model", "prompt", "image_url", "tail_image_url", "last_image_url", "duration", "aspect_ratio",
                "negative_prompt", "cfg_scale", "generate_audio", "seed", "provider", "webhook_url",
                "webhook_events"}

AIML_STATUS = {JobStatus.QUEUED: "queued", JobStatus.RUNNING: "generating", JobStatus.COMPLETED: "completed",
               JobStatus.FAILED: "error", JobStatus.CANCELLED: "error", JobStatus.EXPIRED: "error"}

LAST_EVENT_ID = re.compile(r"[0-9]{1,18}")

router = APIRouter(tags=["aiml"])


async def json_body(request: Request) -> dict[str, Any]:
    return params.json_object(await request.body(), "a JSON object with at least 'model' and 'prompt'")


def image_input(body: dict[str, Any], *fields: str) -> ImageInput | None:
    """The image in the first of `fields` (aliases) given; every one given must be a non-empty string."""
    found = None
    for field in fields:
        value = body.get(field)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(field, f"{field}: must be an http(s) URL, a data: URI or base64 image data", "type")
        found = found or ImageInput(field, ref=value.strip())
    return found


def parse_create(body: dict[str, Any], owner: str) -> Submission:
    unknown = set(body) - KNOWN_FIELDS
    if unknown and log.isEnabledFor(logging.DEBUG):  # sorting thousands of names costs even when not logged
        log.debug("ignoring unknown fields: %s", ", ".join(sorted(unknown)))
    model = params.text(body, "model", required=True, max_chars=200)
    params.text(body, "provider", required=False, max_chars=200)  # accepted and unused, but still text
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
    """`meta`: clipforge's usage, and for a hosted engine the provider's job id and usage."""
    spec = job.params.get("spec", {})
    meta: dict[str, Any] = {"usage": {"credits_used": 0, "duration_seconds": spec.get("duration"),
                                      "input_tokens": 0, "output_tokens": 0, "total_tokens": 0}}
    provider = (job.outputs or {}).get("provider")
    if provider:
        meta["provider"] = provider
    return meta


def generation_view(job: Job, request: Request, svc: Services, position: int | None = None,
                    eta: float | None = None) -> dict[str, Any]:
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
        "eta_seconds": eta,
        "video": {"url": video_url, "content_type": "video/mp4", "file_name": "output.mp4",
                  "file_size": out.get("file_size")} if done else None,
        "output": {"video_url": video_url, "thumbnail_url": svc.media_url(request, out.get("thumbnail"), job),
                   "duration_seconds": job.params["spec"]["duration"], "has_audio": out.get("has_audio"),
                   "width": out.get("width"), "height": out.get("height")} if done else None,
        "error": error,
        "prompt": job.params["spec"].get("prompt"),
        "seed": job.params["spec"].get("seed"),
        "expires_at": int(job.expires_at) if job.expires_at else None,
        "meta": usage(job),
    }


async def poll_response(job: Job, request: Request, svc: Services) -> JSONResponse:
    """The poll answer, encoded here: a Response skips FastAPI's validation and re-encoding of a dict."""
    position, estimate = None, QueueEstimate(None)
    if job.status == JobStatus.QUEUED:
        position = await svc.jobs.read(svc.store.queue_position, job)
        estimate = await svc.jobs.read(queue_estimate, svc.store, job, position, svc.routing)
    headers = None if job.terminal else {"Retry-After": str(svc.settings.poll_retry_after_seconds)}
    view = generation_view(job, request, svc, position, estimate.eta_seconds)
    if estimate.stage:
        view["stage"] = estimate.stage  # scaled to zero: the first job waits for a worker to start
    return JSONResponse(view, headers=headers)


async def create_generation(request: Request, policy: KeyPolicy = Depends(require_policy),
                            svc: Services = Depends(services)) -> dict[str, Any]:
    body = await json_body(request)
    submission = parse_create(body, policy.owner)
    submission.webhook = await webhook_from_body(body, svc.settings)
    submission.idempotency_key = request.headers.get("idempotency-key")
    submission.max_active = policy.max_active_jobs
    job, _ = await svc.submitter.submit(submission)
    return {"id": job.id, "object": "video.generation", "status": "queued" if job.status == JobStatus.QUEUED
            else AIML_STATUS[job.status], "model": job.model, "created": int(job.created_at), "meta": usage(job)}


LIST_STATUS = {"queued": JobStatus.QUEUED, "generating": JobStatus.RUNNING, "completed": JobStatus.COMPLETED,
               "failed": JobStatus.FAILED, "cancelled": JobStatus.CANCELLED, "expired": JobStatus.EXPIRED}


async def poll_by_query(request: Request, generation_id: str | None = None,
                        limit: int = Query(20, ge=1, le=100), after: str | None = None,
                        status: str | None = None, owner: str = Depends(require_key),
                        svc: Services = Depends(services)) -> JSONResponse:
    """Poll one generation by `generation_id`, or list the caller's generations without it."""
    if generation_id:
        return await poll_response(await svc.jobs.get(generation_id, owner), request, svc)
    if status is not None and status not in LIST_STATUS:
        raise InvalidInput("status", f"status: must be one of {', '.join(LIST_STATUS)}, got {status!r}", "enum")
    jobs = await svc.jobs.list(owner, limit=limit + 1, after=after, order="desc",
                               status=LIST_STATUS[status] if status else None)
    page = jobs[:limit]
    return JSONResponse({"object": "list", "data": [generation_view(j, request, svc) for j in page],
                         "has_more": len(jobs) > limit, "next_cursor": page[-1].id if len(jobs) > limit else None})


@router.get("/v2/video/generations/{generation_id:path}/events")
async def events(generation_id: str, request: Request, owner: str = Depends(require_key),
                 svc: Services = Depends(services)) -> StreamingResponse:
    """Server-sent events: every status/progress change until a terminal state; resumable."""
    await svc.jobs.get(generation_id, owner)
    after = last_event_id(request.headers.get("last-event-id"))
    svc.rate_limiter.stream_opened(owner)
    return StreamingResponse(counted(event_stream(generation_id, after, request, svc), owner, svc),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def counted(stream: AsyncIterator[str], owner: str, svc: Services) -> AsyncIterator[str]:
    """The stream, counted as one of the key's open streams until it ends or its client goes."""
    try:
        async for chunk in stream:
            yield chunk
    finally:
        svc.rate_limiter.stream_closed(owner)


KEEPALIVE_SECONDS = 15.0
EXISTS_CHECK_SECONDS = 1.0  # how soon a stream notices that its job was deleted, and ends
TERMINAL_EVENTS = {"completed", "failed", "cancelled", "expired"}


def last_event_id(value: str | None) -> int:
    """The event seq to resume after; anything but a plain number of up to 18 digits is ignored (0),
    like a browser's EventSource sends when it has no id."""
    return int(value) if value and LAST_EVENT_ID.fullmatch(value) else 0


async def job_or_none(svc: Services, job_id: str) -> Job | None:
    """The job, or None once it has been deleted."""
    try:
        return await svc.jobs.get(job_id)
    except NotFound:
        return None


async def event_stream(job_id: str, after: int, request: Request, svc: Services) -> AsyncIterator[str]:
    quiet_since = checked_at = time.monotonic()
    yield "retry: 2000\n\n"
    while True:
        for event in await svc.jobs.events(job_id, after):
            after = event["seq"]
            status = JobStatus(event["status"])
            data = {"id": job_id, "status": AIML_STATUS[status], "progress": event["progress"],
                    "stage": event["stage"], "timestamp": event["ts"]}
            if status.terminal:
                job = await job_or_none(svc, job_id)
                if job is None:
                    return
                data = generation_view(job, request, svc)
            yield f"id: {after}\nevent: {'done' if status.terminal else 'progress'}\ndata: {json.dumps(data)}\n\n"
            quiet_since = time.monotonic()
            if event["status"] in TERMINAL_EVENTS:
                return
        if await request.is_disconnected():
            return
        if time.monotonic() - checked_at >= EXISTS_CHECK_SECONDS:
            if await job_or_none(svc, job_id) is None:
                return  # deleted: no event will ever come
            checked_at = time.monotonic()
        if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
            yield ": keepalive\n\n"
            quiet_since = time.monotonic()
        await asyncio.sleep(0.25)


async def cancel(generation_id: str, request: Request, owner: str = Depends(require_key),
                 svc: Services = Depends(services)) -> dict[str, Any]:
    """Cancel: a queued job ends at once; a running one stops at its engine's next step."""
    job = await svc.jobs.cancel(generation_id, owner)
    if job.status == JobStatus.CANCELLED and job.params.get("inputs_prefix"):  # a running job's worker deletes them
        await off_loop(svc.artifacts.delete_prefix, job.params["inputs_prefix"])
    view = generation_view(job, request, svc)
    view["cancel_requested"] = True
    return view


router.add_api_route("/v2/video/generations/{generation_id:path}/cancel", cancel, methods=["POST"])
router.add_api_route("/v2/video/generations/{generation_id:path}", cancel, methods=["DELETE"])


@router.get("/v2/video/generations/{generation_id:path}")
async def poll_by_path(generation_id: str, request: Request, owner: str = Depends(require_key)) -> JSONResponse:
    """Poll one generation: the hot path (served lean, see api/polls.py)."""
    svc: Services = request.app.state.services
    return await poll_response(await svc.jobs.get(generation_id, owner), request, svc)


def attach_router(app: FastAPI) -> None:
    aliases = APIRouter(tags=["aiml"])  # per app: the module's router must not grow with every app made
    for path in CREATE_PATHS:
        aliases.add_api_route(path, create_generation, methods=["POST"])
        aliases.add_api_route(path, poll_by_query, methods=["GET"])
    app.include_router(router)
    app.include_router(aliases)
    serve_poll_lean(app, "/v2/video/generations/{generation_id:poll_id}", poll_by_path, "generation_id")
    for path in CREATE_PATHS:
        serve_query_poll_lean(app, path, poll_by_path, "generation_id")
