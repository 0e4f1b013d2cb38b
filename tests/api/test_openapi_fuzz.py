"""Schemathesis over the whole OpenAPI document, against the app in process.

Every operation of both dialects is called with generated requests (valid and invalid, by the
schema) and every answer is checked: no server error, a documented status and media type, a body
that matches its documented schema, and invalid requests refused with a 4xx. The creates must
really run: the key has high limits, a worker is registered as live, and image URLs are served by
a stand-in transport (no DNS, no network), so the run ends with some creates accepted and some
refused with the error envelope (`test_creates_were_exercised`).

Bounded: a few examples per operation and a deadline for the whole run (30-50 s on 2 busy cores).
Deterministic by default, so a failure reproduces; `CLIPFORGE_FUZZ_RANDOM=1` explores new cases.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import shutil
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from clipforge.api.app import create_app
from clipforge.api.openapi import Schema
from clipforge.core.routing import parse_routing
from clipforge.core.settings import Settings
from clipforge.inputs.fetch import ImageFetcher
from clipforge.worker.loop import Worker
from helpers import gradient_image

KEY = "fuzz-key"
EXAMPLES = 12  # per operation and generation mode
RUN_SECONDS = 75.0  # past this, remaining cases are skipped (the run is bounded even on a loaded machine)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection, ignored_auth, unsupported_method]
CREATE_PATHS = {"/v2/video/generations", "/v1/video/generations", "/video/generations",
                "/v2/generate/video/kling/generation", "/v1/videos"}
ROUTING = {
    "models": {"klingai/video-v2-6-pro-image-to-video": {"task": "i2v", "engines": ["preview"]},
               "klingai/video-v2-6-pro-text-to-video": {"task": "t2v", "engines": ["preview"]},
               "sora-2": {"task": "any", "engines": ["preview"]}},
    "engines": {},
}
PNG = gradient_image(400, 400)
PUBLIC_IP = "93.184.216.34"  # what every host name "resolves" to here; nothing connects to it


def fake_resolver(host: str, port: int) -> list[str]:
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        return [PUBLIC_IP]


def fake_getaddrinfo(host: object, port: object, *args: object, **kwargs: object) -> list:
    """DNS for the webhook URL guard (it resolves with the system resolver): one public address, no lookup."""
    address = fake_resolver(str(host), int(port or 0))[0]
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]


def image_server(request: httpx.Request) -> httpx.Response:
    """Every fetched image URL answers a valid 400x400 PNG, unless its path asks for something else."""
    if request.url.path.endswith(".txt"):
        return httpx.Response(200, content=b"not an image", headers={"content-type": "text/plain"})
    return httpx.Response(200, content=PNG, headers={"content-type": "image/png"})


class Outcomes:
    """Statuses seen on create paths per dialect and body type, and how long the run has taken."""

    def __init__(self) -> None:
        self.creates: Counter[tuple[str, int]] = Counter()
        self.envelopes = 0
        self.started: float | None = None  # the first case, not collection: the suite may run long before

    def over_time(self) -> bool:
        if self.started is None:
            self.started = time.monotonic()
        return time.monotonic() - self.started > RUN_SECONDS

    def record(self, path: str, media_type: str | None, response: schemathesis.Response) -> None:
        kind = "aiml" if path != "/v1/videos" else "openai-form" if media_type == "multipart/form-data" \
            else "openai-json"
        self.creates[kind, response.status_code] += 1
        if 400 <= response.status_code < 500:
            body: Schema = response.json()
            self.envelopes += body["statusCode"] == response.status_code and body["message"].strip() != ""

    def count(self, kind: str, low: int, high: int) -> int:
        return sum(n for (k, status), n in self.creates.items() if k == kind and low <= status < high)


OUTCOMES = Outcomes()


def build_app(home: Path) -> FastAPI:
    """The app over a SQLite store in `home`, one high-limit key, images served without a network."""
    keys = home / "keys.toml"
    keys.write_text(f'[keys."{KEY}"]\nname = "fuzz"\nrequests_per_minute = 0\nmax_active_jobs = 0\n')
    app = create_app(Settings(home=home, keys_file=keys), routing=parse_routing(ROUTING))
    app.state.services.submitter.fetcher = ImageFetcher(transport=httpx.MockTransport(image_server),
                                                        resolver=fake_resolver)
    return app


# schemathesis parametrizes at collection, so the app exists then (its lazy `from_fixture` loader does not
# work with pytest 9: it sets `request.node._nodeid`).
HOME = Path(tempfile.mkdtemp(prefix="clipforge-fuzz-"))
atexit.register(shutil.rmtree, HOME, True)  # also when the module's tests are deselected
APP = build_app(HOME)
CONFIG = schemathesis.config.SchemathesisConfig.from_dict({
    "auth": {"openapi": {"bearerAuth": {"bearer": KEY}}},  # schemathesis knows when it leaves the key out
})
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG)


@pytest.fixture(scope="module", autouse=True)
def offline() -> Iterator[None]:
    """No DNS during the run (the webhook URL guard resolves with the system resolver), then clean up."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
        yield
    APP.state.services.store.close()


def register_worker() -> None:
    """A live worker with the preview engine ready (its heartbeat refreshed as the run goes)."""
    APP.state.services.store.register_worker("fuzz-worker", {"pid": 0, "engines": {
        "preview": {"ready": True}}})


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not os.environ.get("CLIPFORGE_FUZZ_RANDOM"),
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    if OUTCOMES.over_time():
        pytest.skip("fuzzing time budget spent")
    register_worker()
    response = case.call_and_validate(checks=CHECKS)
    if case.method == "POST" and case.path in CREATE_PATHS:
        OUTCOMES.record(case.path, case.media_type, response)


def test_creates_were_exercised() -> None:
    """Creates of every dialect and body type were accepted and refused; not just 401s or 429s."""
    for kind in ("aiml", "openai-json", "openai-form"):
        assert OUTCOMES.count(kind, 200, 300) >= 1, OUTCOMES.creates
        assert OUTCOMES.count(kind, 400, 401) >= 5, OUTCOMES.creates
    total = sum(OUTCOMES.creates.values())
    accepted, refused = (sum(OUTCOMES.count(k, lo, hi) for k in ("aiml", "openai-json", "openai-form"))
                         for lo, hi in ((200, 300), (400, 500)))
    assert accepted >= 10 and OUTCOMES.envelopes == refused, OUTCOMES.creates
    unauthorized = sum(n for (_, status), n in OUTCOMES.creates.items() if status in (401, 429))
    assert unauthorized < total / 4, OUTCOMES.creates


def test_finished_generations_conform_to_the_schema(tmp_path: Path) -> None:
    """Views of real jobs (queued, then completed by a worker) and their media, checked against the document:
    the fuzz run above only ever polls ids that do not exist."""
    routing = parse_routing({"models": {"sora-2": {"engines": ["fixed"]}}, "engines": {"fixed": {"steps": 1}}})
    app = create_app(Settings(home=tmp_path, api_keys=(KEY,)), routing=routing)
    svc = app.state.services
    worker = Worker(svc.store, svc.artifacts, routing, svc.settings, worker_id="w")
    worker.check_engines()
    svc.store.register_worker("w", {"engines": {"fixed": {"ready": True}}})
    client = TestClient(app, headers={"Authorization": f"Bearer {KEY}"})

    def check(method: str, path: str, template: str | None = None, **kwargs: object) -> httpx.Response:
        response = client.request(method, path, **kwargs)
        assert response.status_code in (200, 307), response.text
        schema[template or path][method.upper()].validate_response(response)
        return response

    video = check("post", "/v1/videos", files={"prompt": (None, "a kite"), "seconds": (None, "4"),
                                               "size": (None, "256x256")}).json()
    pending = [check("get", f"/v1/videos/{video['id']}", "/v1/videos/{video_id}"),
               check("get", "/v2/video/generations", params={"generation_id": video["id"]})]
    assert [r.json()["status"] for r in pending] == ["queued", "queued"]
    assert worker.run_once()
    done = check("get", f"/v2/video/generations/{video['id']}", "/v2/video/generations/{generation_id}").json()
    assert done["status"] == "completed" and done["output"]["duration_seconds"] == 4
    assert check("get", f"/v1/videos/{video['id']}", "/v1/videos/{video_id}").json()["status"] == "completed"
    check("get", "/v1/videos"), check("get", "/v2/video/generations")
    for variant in ("video", "thumbnail", "spritesheet"):
        check("get", f"/v1/videos/{video['id']}/content", "/v1/videos/{video_id}/content",
              params={"variant": variant})
    for url in (done["video"]["url"], done["output"]["thumbnail_url"]):
        check("get", httpx.URL(url).path, "/media/{key}")
    check("delete", f"/v1/videos/{video['id']}", "/v1/videos/{video_id}")
