"""`fal`: fal's queue API for its Kling 2.6 Pro endpoints.

Contract (fal docs, "Asynchronous Inference" / Queue API reference, docs.fal.ai):
submit `POST https://queue.fal.run/{endpoint}` with the model's input as the JSON body, answered with
`request_id`, `status_url`, `response_url`, `cancel_url`; status `GET {status_url}?logs=1` answers
`IN_QUEUE` (with `queue_position`), `IN_PROGRESS` (with `logs`) or `COMPLETED` (with `logs`, `metrics`);
the result `GET {response_url}` is the model's output (`{"video": {"url": ...}}`) or, for a failed request,
an error body; cancel `PUT {cancel_url}`. `Authorization: Key <key>`. Field mapping: docs/hosted.md.
"""

from __future__ import annotations

from typing import Any

from clipforge.engines.hosted.base import QUEUED, RUNNING, SUCCEEDED, HostedEngine, HostedTask, Upstream, UpstreamState
from clipforge.engines.hosted.http import retry_after_seconds

SEED_MODELS = {
    "klingai/video-v2-6-pro-image-to-video": "fal-ai/kling-video/v2.6/pro/image-to-video",
    "klingai/video-v2-6-pro-text-to-video": "fal-ai/kling-video/v2.6/pro/text-to-video",
}


class FalEngine(HostedEngine):
    name = "fal"
    default_base_url = "https://queue.fal.run"
    default_key_env = "FAL_KEY"
    auth_scheme = "Key"
    default_upstream_models = SEED_MODELS
    # Kling 2.6 Pro on fal: no seed; image-to-video takes no cfg_scale (text-to-video does).
    provider_limits = {"seed": None, "i2v.cfg_scale": None}

    def submit(self, task: HostedTask, model: str) -> Upstream:
        body = self.poll("POST", f"/{model}", task, json=fal_input(task)).json()
        urls = {k: body[k] for k in ("status_url", "response_url", "cancel_url") if body.get(k)}
        return Upstream(str(body["request_id"]), urls, model)

    def _url(self, job: Upstream, kind: str) -> str:
        suffix = {"status_url": "/status", "response_url": "", "cancel_url": "/cancel"}[kind]
        return self.api_link(job.urls.get(kind), f"/{job.model}/requests/{job.id}{suffix}")

    def status(self, job: Upstream, task: HostedTask) -> UpstreamState:
        response = self.poll("GET", self._url(job, "status_url"), task, params={"logs": 1})
        body = response.json()
        status = body.get("status")
        if status == "IN_QUEUE":
            position = body.get("queue_position")
            return UpstreamState(QUEUED, retry_after=retry_after_seconds(response),
                                 detail=f"position {position}" if position is not None else None)
        if status == "COMPLETED":
            # A failed request is COMPLETED too: fetching its result answers the error (raised as EngineError).
            result = self.poll("GET", self._url(job, "response_url"), task).json()
            video = (result.get("video") or {}).get("url")
            return UpstreamState(SUCCEEDED, video_url=video, usage={"metrics": body.get("metrics") or {}})
        logs = body.get("logs") or []
        last = logs[-1].get("message") if logs and isinstance(logs[-1], dict) else None
        return UpstreamState(RUNNING, retry_after=retry_after_seconds(response), detail=last)

    def cancel(self, job: Upstream) -> None:
        self.send_cancel("PUT", self._url(job, "cancel_url"))


def fal_input(task: HostedTask) -> dict[str, Any]:
    spec = task.spec
    body: dict[str, Any] = {"prompt": spec.prompt, "duration": str(spec.duration),
                            "generate_audio": spec.generate_audio}
    if spec.negative_prompt:
        body["negative_prompt"] = spec.negative_prompt
    if task.image is not None:
        body["start_image_url"] = task.image.data_uri()
        if task.tail_image is not None:
            body["end_image_url"] = task.tail_image.data_uri()
    else:
        body["aspect_ratio"] = spec.aspect_ratio or "16:9"
        body["cfg_scale"] = spec.cfg_scale
    return body
