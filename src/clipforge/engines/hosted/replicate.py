"""`replicate`: Replicate's predictions API for its Kling video models.

Contract (Replicate HTTP API reference, replicate.com/docs/reference/http): create
`POST {base_url}/v1/models/{owner}/{name}/predictions` (or `POST /v1/predictions` with `version` when the
upstream model is `owner/name:version`) with `{"input": {...}}`, answered 201 with a prediction; get
`GET /v1/predictions/{id}`; cancel `POST /v1/predictions/{id}/cancel`. Statuses `starting`, `processing`,
`succeeded`, `failed`, `canceled`; `output` is the video's URL, `error` the failure, `logs` the model's
output, `metrics.predict_time` the billed seconds. `Authorization: Bearer <token>`. The key is checked
with `GET /v1/account` (no credits spent). Field mapping: docs/hosted.md.
"""

from __future__ import annotations

import re
from typing import Any

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

SEED_MODELS = {
    "klingai/video-v2-6-pro-image-to-video": "kwaivgi/kling-v2.6",
    "klingai/video-v2-6-pro-text-to-video": "kwaivgi/kling-v2.6",
}
STATES = {"starting": QUEUED, "processing": RUNNING, "succeeded": SUCCEEDED, "failed": FAILED,
          "canceled": CANCELLED, "aborted": CANCELLED}
PERCENT = re.compile(r"(\d{1,3})%")


class ReplicateEngine(HostedEngine):
    name = "replicate"
    default_base_url = "https://api.replicate.com"
    default_key_env = "REPLICATE_API_TOKEN"
    credentials_path, key_word = "/v1/account", "token"
    default_upstream_models = SEED_MODELS
    # Not in the model's published input schema: an end frame, a seed, cfg_scale.
    provider_limits = {"tail_image": None, "seed": None, "cfg_scale": None}

    def submit(self, task: HostedTask, model: str) -> Upstream:
        name, _, version = model.partition(":")
        if version:
            path, body = "/v1/predictions", {"version": version, "input": replicate_input(task)}
        else:
            path, body = f"/v1/models/{name}/predictions", {"input": replicate_input(task)}
        prediction = self.poll("POST", path, task, json=body).json()
        return Upstream(str(prediction["id"]), dict(prediction.get("urls") or {}), model)

    def status(self, job: Upstream, task: HostedTask) -> UpstreamState:
        response = self.poll("GET", self.api_link(job.urls.get("get"), f"/v1/predictions/{job.id}"), task)
        return parse_prediction(response.json(), retry_after_seconds(response))

    def cancel(self, job: Upstream) -> None:
        self.send_cancel("POST", self.api_link(job.urls.get("cancel"), f"/v1/predictions/{job.id}/cancel"))


def replicate_input(task: HostedTask) -> dict[str, Any]:
    spec = task.spec
    body: dict[str, Any] = {"prompt": spec.prompt, "duration": spec.duration, "generate_audio": spec.generate_audio}
    if spec.negative_prompt:
        body["negative_prompt"] = spec.negative_prompt
    if task.image is not None:
        body["start_image"] = task.image.data_uri()
    else:
        body["aspect_ratio"] = spec.aspect_ratio or "16:9"
    return body


def parse_prediction(body: dict[str, Any], retry_after: float | None) -> UpstreamState:
    state = STATES.get(str(body.get("status")), FAILED)
    output = body.get("output")
    video = output[0] if isinstance(output, list) and output else output if isinstance(output, str) else None
    logs = str(body.get("logs") or "")
    percents = PERCENT.findall(logs)
    progress = min(100, int(percents[-1])) / 100 if percents else None
    error = body.get("error")
    if state == FAILED and not error:
        error = f"the prediction ended with status {body.get('status')!r}"
    lines = logs.strip().splitlines()
    return UpstreamState(state, progress, video, str(error) if error else None,
                         {"metrics": body.get("metrics") or {}}, retry_after, lines[-1][:120] if lines else None)
