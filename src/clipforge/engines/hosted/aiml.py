"""`aiml`: the AI/ML API video contract (the one clipforge itself serves), so it also fronts another clipforge.

Create `POST {base_url}/v2/video/generations`, poll `GET {base_url}/v2/video/generations?generation_id=`,
cancel `POST {base_url}/v2/video/generations/{id}/cancel` (clipforge's; the hosted AI/ML API documents no
cancel, so there a cancel only stops polling). `Authorization: Bearer <key>`. Field mapping: docs/hosted.md.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from clipforge.engines.hosted.base import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    HostedEngine,
    HostedTask,
    Upstream,
    UpstreamState,
)
from clipforge.engines.hosted.http import retry_after_seconds

PATH = "/v2/video/generations"
STATES = {"queued": QUEUED, "waiting": QUEUED, "generating": RUNNING, "processing": RUNNING,
          "in_progress": RUNNING, "active": RUNNING, "completed": SUCCEEDED, "succeeded": SUCCEEDED,
          "error": FAILED, "failed": FAILED, "cancelled": CANCELLED, "canceled": CANCELLED}


class AimlEngine(HostedEngine):
    name = "aiml"
    default_base_url = "https://api.aimlapi.com"
    default_key_env = "AIMLAPI_API_KEY"
    credentials_path = "/v1/models"  # lists models with the key; spends no credits

    def submit(self, task: HostedTask, model: str) -> Upstream:
        # The job id as Idempotency-Key: a retried submit (or a worker that died before saving the
        # upstream id) is answered with the same upstream job by servers that honour it (clipforge does).
        response = self.poll("POST", PATH, task, json=request_body(task, model),
                             headers={"Idempotency-Key": task.job_id})
        return Upstream(str(response.json()["id"]), model=model)

    def status(self, job: Upstream, task: HostedTask) -> UpstreamState:
        response = self.poll("GET", PATH, task, params={"generation_id": job.id})
        return parse_status(response.json(), retry_after_seconds(response))

    def cancel(self, job: Upstream) -> None:
        self.send_cancel("POST", f"{PATH}/{quote(job.id, safe=':/')}/cancel")


def request_body(task: HostedTask, model: str) -> dict[str, Any]:
    spec = task.spec
    body: dict[str, Any] = {"model": model, "prompt": spec.prompt, "duration": spec.duration,
                            "cfg_scale": spec.cfg_scale, "generate_audio": spec.generate_audio, "seed": spec.seed}
    if task.image is not None:
        body["image_url"] = task.image.data_uri()
    if task.tail_image is not None:
        body["tail_image_url"] = task.tail_image.data_uri()
    if spec.aspect_ratio:
        body["aspect_ratio"] = spec.aspect_ratio
    if spec.negative_prompt:
        body["negative_prompt"] = spec.negative_prompt
    return body


def parse_status(body: dict[str, Any], retry_after: float | None) -> UpstreamState:
    state = STATES.get(str(body.get("status", "")).lower(), FAILED)
    error = body.get("error") or {}
    message = error.get("message") if isinstance(error, dict) else str(error)
    if state == FAILED and not message:
        message = f"the provider reported status {body.get('status')!r}"
    video = (body.get("video") or {}).get("url") or (body.get("output") or {}).get("video_url")
    progress = body.get("progress")
    meta = body.get("meta") or {}
    return UpstreamState(state, progress / 100 if isinstance(progress, (int, float)) else None, video, message,
                         meta.get("usage") or body.get("usage") or {}, retry_after,
                         f"position {body['queue_position']}" if body.get("queue_position") is not None else None)
