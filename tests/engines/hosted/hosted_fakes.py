"""Local fakes of fal's queue API and Replicate's predictions API, served through httpx.MockTransport.

Each follows the provider's public documentation, as read for this project:

- `FakeFal`: fal "Asynchronous Inference" (docs.fal.ai/documentation/model-apis/inference/queue) and the
  Queue API reference (fal.ai/docs/inference-api/queue/cancel): `Authorization: Key <key>`;
  `POST https://queue.fal.run/{endpoint}` answers `request_id`, `response_url`, `status_url`,
  `cancel_url` (on the app id without the endpoint's subpath, as in fal's example); status
  `IN_QUEUE` (+ `queue_position`) -> `IN_PROGRESS` (+ `logs`) -> `COMPLETED` (+ `logs`, `metrics`);
  a failed request is COMPLETED and its result answers an error body (`{"detail": ...}`, HTTP 422);
  `PUT {cancel_url}` answers 202 `{"status": "CANCELLATION_REQUESTED"}`; results are links on
  `*.fal.media`.
- `FakeReplicate`: Replicate's HTTP API reference (replicate.com/docs/reference/http; sdks.replicate.com):
  `Authorization: Bearer <token>`; `POST /v1/models/{owner}/{name}/predictions` with `{"input": ...}`
  answers 201 with a prediction (`id`, `status: starting`, `urls.get`, `urls.cancel`); `GET` moves
  `starting -> processing -> succeeded | failed`, `output` a file URL on `replicate.delivery`, `logs`,
  `metrics.predict_time`; `POST .../cancel` answers the prediction `canceled`; `GET /v1/account` checks a
  token; errors are problem bodies `{"title", "detail", "status"}`.

Both can answer 429 with `Retry-After` a set number of times, and record every request they get.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

FAL_MEDIA = "https://v3.fal.media/files/tiger/out.mp4"
REPLICATE_MEDIA = "https://replicate.delivery/xezq/abc123/tmp.mp4"


@dataclass
class Fake:
    key: str
    video: bytes
    scheme: str = "Bearer"
    media_url: str = ""
    throttle: int = 0  # how many status polls answer 429 first
    retry_after: str = "0.2"
    fail: str | None = None  # the provider's failure message
    trickle: tuple[int, float] | None = None  # the result host sends (bytes, one every seconds) instead
    requests: list[httpx.Request] = field(default_factory=list)
    polls: int = 0
    cancelled: bool = False

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host.endswith((".fal.media", "replicate.delivery")):
            return httpx.Response(200, content=self.drip() if self.trickle else self.video,
                                  headers={"content-type": "video/mp4"})
        if request.headers.get("authorization") != f"{self.scheme} {self.key}":
            return self.unauthorized()
        return self.route(request)

    def drip(self) -> Iterator[bytes]:
        count, seconds = self.trickle or (0, 0.0)
        for _ in range(count):
            time.sleep(seconds)
            yield b"x"

    def unauthorized(self) -> httpx.Response:
        raise NotImplementedError

    def route(self, request: httpx.Request) -> httpx.Response:
        raise NotImplementedError

    def throttled(self) -> httpx.Response | None:
        if self.throttle > 0:
            self.throttle -= 1
            return httpx.Response(429, headers={"retry-after": self.retry_after},
                                  json=self.throttle_body())
        return None

    def throttle_body(self) -> dict[str, Any]:
        return {"detail": "Too many requests"}

    def body(self, index: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[index].content)

    def sent(self, method: str, path_part: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and path_part in str(r.url)]


class FakeFal(Fake):
    REQUEST_ID = "764cabcf-b745-4b3e-ae38-1200304cf45b"
    SEQUENCE = [{"status": "IN_QUEUE", "queue_position": 2}, {"status": "IN_QUEUE", "queue_position": 0},
                {"status": "IN_PROGRESS", "logs": [{"message": "rendering", "level": "INFO",
                                                     "timestamp": "2026-11-30T08:00:00Z"}]},
                {"status": "COMPLETED", "logs": [], "metrics": {"inference_time": 61.5}}]

    def __init__(self, key: str, video: bytes, **kw: Any) -> None:
        super().__init__(key, video, scheme="Key", media_url=FAL_MEDIA, **kw)

    def unauthorized(self) -> httpx.Response:
        return httpx.Response(401, json={"detail": "Invalid API key"})

    def base(self) -> str:
        return f"https://queue.fal.run/fal-ai/kling-video/requests/{self.REQUEST_ID}"

    def route(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST":
            return httpx.Response(200, json={"request_id": self.REQUEST_ID, "response_url": self.base(),
                                             "status_url": f"{self.base()}/status",
                                             "cancel_url": f"{self.base()}/cancel"})
        if request.method == "PUT" and path.endswith("/cancel"):
            self.cancelled = True
            return httpx.Response(202, json={"status": "CANCELLATION_REQUESTED"})
        if path.endswith("/status"):
            return self.throttled() or self.status()
        if self.fail:
            return httpx.Response(422, json={"detail": [{"loc": ["body", "start_image_url"], "msg": self.fail,
                                                         "type": "value_error"}]})
        return httpx.Response(200, json={"video": {"url": self.media_url, "content_type": "video/mp4",
                                                   "file_name": "out.mp4", "file_size": len(self.video)}})

    def status(self) -> httpx.Response:
        state = self.SEQUENCE[min(self.polls, len(self.SEQUENCE) - 1)]
        self.polls += 1
        return httpx.Response(200, json={**state, "response_url": self.base()})


class FakeReplicate(Fake):
    PREDICTION_ID = "gm3qorzdhgbfurvjtvhg6dckhu"
    SEQUENCE = ["starting", "processing", "processing", "succeeded"]

    def __init__(self, key: str, video: bytes, **kw: Any) -> None:
        super().__init__(key, video, scheme="Bearer", media_url=REPLICATE_MEDIA, **kw)

    def unauthorized(self) -> httpx.Response:
        return httpx.Response(401, json={"title": "Unauthenticated", "status": 401,
                                         "detail": "You did not pass a valid authentication token"})

    def throttle_body(self) -> dict[str, Any]:
        return {"title": "Request was throttled", "status": 429,
                "detail": "Request was throttled. Your rate limit resets in ~1s."}

    def prediction(self, status: str) -> dict[str, Any]:
        base = f"https://api.replicate.com/v1/predictions/{self.PREDICTION_ID}"
        done = status in ("succeeded", "failed", "canceled")
        return {"id": self.PREDICTION_ID, "model": "kwaivgi/kling-v2.6", "version": "hidden",
                "input": {}, "logs": "Generating... 40%\n" if status == "processing" else "",
                "output": self.media_url if status == "succeeded" else None,
                "error": self.fail if status == "failed" else None, "status": status,
                "created_at": "2026-11-30T08:00:00.000Z", "data_removed": False,
                "metrics": {"predict_time": 42.5} if done else {},
                "urls": {"get": base, "cancel": f"{base}/cancel", "web": "https://replicate.com/p/x"}}

    def route(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/account":
            return httpx.Response(200, json={"type": "user", "username": "tester", "name": "Tester"})
        if request.method == "POST" and path.endswith("/predictions"):
            return httpx.Response(201, json=self.prediction("starting"))
        if request.method == "POST" and path.endswith("/cancel"):
            self.cancelled = True
            return httpx.Response(200, json=self.prediction("canceled"))
        if request.method == "GET" and path.startswith("/v1/predictions/"):
            return self.throttled() or self.status()
        return httpx.Response(404, json={"title": "Not found", "detail": "Not found", "status": 404})

    def status(self) -> httpx.Response:
        status = self.SEQUENCE[min(self.polls, len(self.SEQUENCE) - 1)]
        self.polls += 1
        if status == "succeeded" and self.fail:
            status = "failed"
        return httpx.Response(200, json=self.prediction(status))
