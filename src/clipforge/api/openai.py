"""The OpenAI dialect: `/v1/videos` as the official `openai` SDK calls it (`client.videos.*`).

Jobs live in the one job store, so a video made here is a generation in the AIML dialect and back.
What clipforge cannot render is refused with a 400 that names the field and the allowed values:

- `seconds`: "4", "8" or "12" (the values the openai SDK sends) or "5" or "10" (the AIML dialect's);
  the clip is exactly that long; omitted: "5". Anything else is refused rather than silently changed.
- `size`: "WxH" with even sides of 256..1920 px and an aspect between 1:2.5 and 2.5:1 (OpenAI's
  720x1280, 1280x720, 1024x1792 and 1792x1024 all qualify); omitted: the input image's own size
  (long side capped at 1920) with `input_reference`, else 1920x1080.
- `model`: omitted means "sora-2" (routed like the seed models in the packaged models.toml).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from clipforge.api import params
from clipforge.api.async_store import off_loop
from clipforge.api.auth import require_key, require_policy
from clipforge.api.files import opened_file_response
from clipforge.api.polls import serve_poll_lean
from clipforge.api.services import Services, services
from clipforge.api.submit import ImageInput, Submission
from clipforge.api.webhooks import webhook_from_body
from clipforge.core.capabilities import OPENAI_FIELD_NAMES
from clipforge.core.errors import Conflict, InvalidInput, NotFound
from clipforge.core.job import Job, JobStatus
from clipforge.core.keys import KeyPolicy
from clipforge.core.spec import DURATIONS, OPENAI_DURATIONS, GenerationSpec, output_size
from clipforge.inputs.fetch import load_image
from clipforge.inputs.images import CheckedImage, check_image_bytes
from clipforge.jobs.rows import CANCELLED_ERROR

log = logging.getLogger(__name__)

DEFAULT_MODEL = "sora-2"
SECONDS = tuple(str(d) for d in OPENAI_DURATIONS)
MIN_SIDE, MAX_SIDE, MAX_ASPECT = 256, 1920, 2.5
POLL_AFTER_MS = 1000
MAX_FORM_PART = 16 * 1024 * 1024  # a data: URI of a 10 MB image in a form field
FIELD = "input_reference"

OPENAI_STATUS = {JobStatus.QUEUED: "queued", JobStatus.RUNNING: "in_progress", JobStatus.COMPLETED: "completed",
                 JobStatus.FAILED: "failed", JobStatus.CANCELLED: "failed", JobStatus.EXPIRED: "failed"}
VARIANTS = {"video": ("video", "video/mp4"), "thumbnail": ("thumbnail", "image/jpeg"),
            "spritesheet": ("spritesheet", "image/jpeg")}

router = APIRouter(tags=["openai"])


# -- parsing ---------------------------------------------------------------------------------------
def seconds(value: Any) -> int:
    if value is None or value == "":
        return DURATIONS[0]
    text = str(value).strip()
    if isinstance(value, bool) or text not in SECONDS:
        allowed = ", ".join(f'"{s}"' for s in SECONDS[:-1]) + f' or "{SECONDS[-1]}"'
        raise InvalidInput("seconds", f"seconds: must be {allowed} (clipforge renders clips of exactly those "
                           f"lengths); got {value!r}", "seconds")
    return int(text)


def size(value: Any) -> tuple[int, int] | None:
    if value is None or value == "":
        return None
    match = re.fullmatch(r"\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*", value) if isinstance(value, str) else None
    if not match:
        raise InvalidInput("size", f"size: must be WIDTHxHEIGHT in pixels, e.g. \"1280x720\"; got {value!r}", "size")
    width, height = int(match[1]), int(match[2])
    if width % 2 or height % 2:
        raise InvalidInput("size", f"size: width and height must be even numbers; got {width}x{height}", "size")
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise InvalidInput("size", f"size: each side must be between {MIN_SIDE} and {MAX_SIDE} px; "
                           f"got {width}x{height}", "size")
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise InvalidInput("size", f"size: aspect ratio must be between 1:{MAX_ASPECT} and {MAX_ASPECT}:1; "
                           f"got {width}x{height}", "size")
    return width, height


async def create_body(request: Request) -> dict[str, Any]:
    """The create request as a dict, from multipart/urlencoded form or JSON."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form(max_part_size=MAX_FORM_PART)
        body: dict[str, Any] = {k: v for k, v in form.items() if not k.startswith(FIELD + "[")}
        nested = {k[len(FIELD) + 1:-1]: v for k, v in form.items() if k.startswith(FIELD + "[") and k.endswith("]")}
        if nested and FIELD not in body:
            body[FIELD] = nested
        params.check_body(body)
        return body
    return await json_object(request)


async def json_object(request: Request) -> dict[str, Any]:
    return params.json_object(await request.body(), "a JSON object or a multipart form")


async def reference(value: Any, svc: Services) -> CheckedImage | None:
    """`input_reference`: an uploaded file, `{"image_url": ...}`, or a URL / data URI string."""
    if value is None or value == "":
        return None
    max_bytes = svc.settings.max_image_bytes
    if isinstance(value, UploadFile):
        return await off_loop(check_image_bytes, await value.read(), FIELD, max_bytes)
    if isinstance(value, dict):
        if value.get("file_id") and not value.get("image_url"):
            raise InvalidInput(f"{FIELD}.file_id", f"{FIELD}.file_id: file ids are not supported; upload the "
                               "image as a file or give image_url", "unsupported")
        value = value.get("image_url")
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(FIELD, f"{FIELD}: must be an image file, an http(s) URL, a data: URI or "
                           '{"image_url": ...}', "type")
    return await load_image(value.strip(), FIELD, svc.submitter.fetcher, max_bytes)


async def parse_create(body: dict[str, Any], owner: str, svc: Services) -> Submission:
    image = await reference(body.get(FIELD), svc)
    duration, requested = seconds(body.get("seconds")), size(body.get("size"))
    spec: dict[str, Any] = {
        "prompt": params.text(body, "prompt", required=True),
        "negative_prompt": params.text(body, "negative_prompt", required=False),
        "duration": duration,
        "generate_audio": params.flag(body.get("generate_audio"), "generate_audio", True),
        "seed": params.seed(body.get("seed")),
        "seed_given": body.get("seed") not in (None, ""),
    }
    # An explicit output size always, so the video object can say what it will be before it exists.
    dims = (image.width, image.height) if image else None
    spec["size"] = requested or output_size(GenerationSpec(prompt="", duration=duration), dims)
    model = params.text(body, "model", required=False, max_chars=200) or DEFAULT_MODEL
    return Submission(owner=owner, model=model, spec=spec,
                      image=ImageInput(FIELD, data=image.data, checked=image) if image else None,
                      field_names=dict(OPENAI_FIELD_NAMES))


# -- views -----------------------------------------------------------------------------------------
def error_object(job: Job) -> dict[str, Any] | None:
    if job.status == JobStatus.CANCELLED:
        return {"code": "cancelled", "message": (job.error or {}).get("message") or CANCELLED_ERROR["message"]}
    if job.status == JobStatus.EXPIRED:
        return {"code": "expired", "message": "This video's outputs expired and were deleted; create it again "
                "(the same seed reproduces it)."}
    if job.status == JobStatus.FAILED:
        name = (job.error or {}).get("name") or "Failed"
        code = (job.error or {}).get("code") or re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
        return {"code": code, "message": (job.error or {}).get("message") or "generation failed"}
    return None


def video_size(job: Job) -> str | None:
    spec, out = job.params["spec"], job.outputs or {}
    if spec.get("size"):
        width, height = spec["size"]
    elif out.get("width"):
        width, height = out["width"], out["height"]
    elif not spec.get("image"):
        width, height = output_size(GenerationSpec.from_dict(spec), None)
    else:
        return None  # an image-to-video job from the other dialect: known once it has rendered
    return f"{width}x{height}"


def video_object(job: Job) -> dict[str, Any]:
    spec = job.params["spec"]
    return {
        "id": job.id,
        "object": "video",
        "model": job.model,
        "status": OPENAI_STATUS[job.status],
        "progress": 100 if job.status == JobStatus.COMPLETED else int(job.progress),
        "created_at": int(job.created_at),
        "completed_at": int(job.finished_at) if job.terminal and job.finished_at else None,
        "expires_at": int(job.expires_at) if job.expires_at else None,
        "prompt": spec.get("prompt"),
        "seconds": str(spec.get("duration")),
        "size": video_size(job),
        "remixed_from_video_id": job.remixed_from,
        "error": error_object(job),
    }


def respond(job: Job, response: Response) -> dict[str, Any]:
    if not job.terminal:
        response.headers["openai-poll-after-ms"] = str(POLL_AFTER_MS)
    return video_object(job)


# -- handlers --------------------------------------------------------------------------------------
async def submit(submission: Submission, request: Request, policy: KeyPolicy, svc: Services) -> Job:
    submission.idempotency_key = request.headers.get("idempotency-key")
    submission.max_active = policy.max_active_jobs
    job, _ = await svc.submitter.submit(submission)
    return job


@router.post("/v1/videos")
async def create_video(request: Request, response: Response, policy: KeyPolicy = Depends(require_policy),
                       svc: Services = Depends(services)) -> dict[str, Any]:
    """Create a video job (multipart form or JSON)."""
    body = await create_body(request)
    submission = await parse_create(body, policy.owner, svc)
    submission.webhook = await webhook_from_body(body, svc.settings)
    return respond(await submit(submission, request, policy, svc), response)


@router.get("/v1/videos")
async def list_videos(limit: int = Query(20, ge=1, le=100), after: str | None = None,
                      order: str = Query("desc", pattern="^(asc|desc)$"), owner: str = Depends(require_key),
                      svc: Services = Depends(services)) -> dict[str, Any]:
    jobs = await svc.jobs.list(owner, limit=limit + 1, after=after or None, order=order)
    page = [video_object(j) for j in jobs[:limit]]
    return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(jobs) > limit}


@router.get("/v1/videos/{video_id:path}/content")
async def download_content(video_id: str, variant: str = "video", owner: str = Depends(require_key),
                           svc: Services = Depends(services)) -> Response:
    """The video (MP4) or its thumbnail or spritesheet (JPEG), once completed."""
    if variant not in VARIANTS:
        raise InvalidInput("variant", f"variant: must be one of {', '.join(VARIANTS)}; got {variant!r}", "enum")
    job = await svc.jobs.get(video_id, owner)
    if job.status != JobStatus.COMPLETED:
        state = f"{OPENAI_STATUS[job.status]} ({job.status.value}, {job.progress}%)"
        raise NotFound(f"video '{video_id}' has no content: its status is {state}; content is available once "
                       "the status is completed")
    key, media_type = VARIANTS[variant]
    artifact = (job.outputs or {}).get(key)
    path = await off_loop(svc.artifacts.local_path, artifact) if artifact else None
    if path is not None:
        opened = await off_loop(opened_file_response, path, media_type=media_type)
        if opened is None:
            raise NotFound(f"video '{video_id}' has no {variant} (it may have expired)")
        return opened
    try:
        data = await off_loop(svc.artifacts.get_bytes, artifact) if artifact else None
    except FileNotFoundError:
        data = None
    if data is None:
        raise NotFound(f"video '{video_id}' has no {variant} (it may have expired)")
    return Response(data, media_type=media_type)


@router.post("/v1/videos/{video_id:path}/remix")
async def remix(video_id: str, request: Request, response: Response, policy: KeyPolicy = Depends(require_policy),
                svc: Services = Depends(services)) -> dict[str, Any]:
    """A new video from the same inputs and parameters (seed included) with a new prompt."""
    prompt = params.text(await json_object(request), "prompt", required=True)
    source = await svc.jobs.get(video_id, policy.owner)
    spec = {k: v for k, v in source.params["spec"].items() if k not in ("image", "tail_image")}
    spec.update(prompt=prompt, seed_given=True, size=tuple(spec["size"]) if spec.get("size") else None)
    try:
        image = await off_loop(stored_input, svc, source.params["spec"].get("image"), FIELD)
        tail = await off_loop(stored_input, svc, source.params["spec"].get("tail_image"), "tail_image")
    except FileNotFoundError:
        raise Conflict(f"video '{video_id}' can no longer be remixed: its input image was deleted "
                       "(it expired, failed, was cancelled or was deleted); create a new video instead") from None
    submission = Submission(owner=policy.owner, model=source.model, spec=spec, image=image, tail_image=tail,
                            remixed_from=source.id, field_names=dict(OPENAI_FIELD_NAMES))
    return respond(await submit(submission, request, policy, svc), response)


def stored_input(svc: Services, key: str | None, name: str) -> ImageInput | None:
    return ImageInput(name, data=svc.artifacts.get_bytes(key)) if key else None


@router.get("/v1/videos/{video_id:path}")
async def retrieve(video_id: str, request: Request, owner: str = Depends(require_key)) -> JSONResponse:
    """A status poll: the hot path (served lean, see api/polls.py)."""
    svc: Services = request.app.state.services
    job = await svc.jobs.get(video_id, owner)
    headers = None if job.terminal else {"openai-poll-after-ms": str(POLL_AFTER_MS)}
    return JSONResponse(video_object(job), headers=headers)


@router.delete("/v1/videos/{video_id:path}")
async def delete(video_id: str, owner: str = Depends(require_key),
                 svc: Services = Depends(services)) -> dict[str, Any]:
    """Cancel if in flight, delete the record, then its media and inputs."""
    job = await svc.jobs.get(video_id, owner)
    if not job.terminal:
        try:
            await svc.jobs.cancel(video_id, owner)
        except Conflict:
            pass  # it finished meanwhile
    job = await svc.jobs.delete(video_id, owner)
    prefixes = [job.media_token, job.params.get("inputs_prefix")]
    for prefix in filter(None, prefixes):
        await off_loop(svc.artifacts.delete_prefix, prefix)
    return {"id": job.id, "object": "video.deleted", "deleted": True}


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
    serve_poll_lean(app, "/v1/videos/{video_id:poll_id}", retrieve, "video_id")
