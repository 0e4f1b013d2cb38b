"""The queue-wait limit over HTTP: a job no worker starts within `CLIPFORGE_MAX_QUEUE_SECONDS` of being
queued fails with code queue_timeout in both dialects, its inputs go, its webhook fires and its place
in the caller's active-job quota is free again."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from clipforge.api.app import create_app
from clipforge.core.settings import Settings
from clipforge.jobs.memory import MemoryJobStore
from helpers import TEST_MODELS_TOML, LiveServer, data_uri, gradient_image

AUTOSCALED_TOML = """
[models."ltx-2"]
engines = ["ltx2"]

[autoscale]
engines = ["ltx2"]
cold_start_seconds = 60
"""


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict]]]:
    """A local endpoint answering 200 to every POST; yields its URL and the JSON bodies received."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers.get("content-length", 0)))))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def wait_until(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise TimeoutError(what)


def inputs_left(home: Path) -> list[Path]:
    root = home / "media" / "inputs"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def assert_queue_timeout_in_both_dialects(get: Callable[[str], httpx.Response], gen_id: str, limit: str) -> None:
    aiml = get(f"/v2/video/generations/{gen_id}").json()
    assert aiml["status"] == "error", aiml
    assert aiml["error"]["name"] == "QueueTimeout" and aiml["error"]["code"] == "queue_timeout"
    assert f"No worker started this generation within {limit} s" in aiml["error"]["message"]
    video = get(f"/v1/videos/{gen_id}").json()
    assert video["status"] == "failed" and video["error"]["code"] == "queue_timeout", video
    assert f"within {limit} s" in video["error"]["message"]


def test_no_worker_at_all_the_api_fails_the_job_and_frees_the_quota(tmp_path: Path):
    """Scaled to zero and the worker never comes up: the api's own sweep ends the wait."""
    config, keys = tmp_path / "models.toml", tmp_path / "keys.toml"
    config.write_text(AUTOSCALED_TOML)
    keys.write_text('[keys."k1"]\nmax_active_jobs = 1\n')
    store = MemoryJobStore()
    settings = Settings(home=tmp_path, keys_file=keys, models_config=config, max_queue_seconds=1.0,
                        allow_private_urls=True)
    auth = {"Authorization": "Bearer k1"}
    body = {"model": "ltx-2", "prompt": "a lighthouse", "image_url": data_uri(gradient_image(400, 400)),
            "webhook_url": "http://127.0.0.1:9/hook"}
    with TestClient(create_app(settings, store=store)) as client:
        created = client.post("/v2/video/generations", headers=auth, json=body)
        assert created.status_code == 200, created.text
        gen_id = created.json()["id"]
        assert store.get(gen_id).status.value == "queued" and inputs_left(tmp_path)
        full = client.post("/v2/video/generations", headers=auth, json={"model": "ltx-2", "prompt": "second"})
        assert full.status_code == 429, full.text

        wait_until(lambda: store.get(gen_id).terminal, 20, "the queued job never failed")
        assert_queue_timeout_in_both_dialects(lambda path: client.get(path, headers=auth), gen_id, "1")
        assert inputs_left(tmp_path) == []
        # the failed webhook is in the outbox, for the dispatcher of whichever worker comes up
        assert [d["event_type"] for d in store.deliveries(gen_id)] == ["generation.failed"]
        again = client.post("/v2/video/generations", headers=auth, json={"model": "ltx-2", "prompt": "again"})
        assert again.status_code == 200, again.text


def test_a_job_waiting_behind_a_busy_worker_times_out_over_http(tmp_path: Path):
    """`clipforge serve` with one worker busy on a long job: the job queued behind it fails after the
    limit, its webhook is delivered, its input image deleted, and the key may queue another."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "models.toml").write_text(TEST_MODELS_TOML)
    keys = tmp_path / "keys.toml"
    keys.write_text('[keys."key-alpha"]\nmax_active_jobs = 2\n')
    server = LiveServer(home, extra_env={"CLIPFORGE_MAX_QUEUE_SECONDS": "2", "CLIPFORGE_ALLOW_PRIVATE_URLS": "1",
                                         "CLIPFORGE_KEYS_FILE": str(keys),
                                         "CLIPFORGE_WEBHOOK_BACKOFF_SECONDS": "0.2"}).start()
    try:
        with webhook_receiver() as (hook_url, received), \
                server.client() as c:
            busy = c.post("/v2/video/generations", json={"model": "test/slow", "prompt": "a long one"})
            assert busy.status_code == 200, busy.text
            busy_id = busy.json()["id"]
            wait_until(lambda: c.get(f"/v2/video/generations/{busy_id}").json()["status"] == "generating", 30,
                       "the first job never started")
            waiting = c.post("/v1/videos", data={"model": "test/slow", "prompt": "behind it",
                                                 "webhook_url": hook_url},
                             files={"input_reference": ("f.png", gradient_image(400, 400), "image/png")})
            assert waiting.status_code == 200, waiting.text
            gen_id = waiting.json()["id"]
            assert waiting.json()["status"] == "queued" and inputs_left(home)
            assert c.post("/v2/video/generations", json={"model": "test/slow", "prompt": "3rd"}).status_code == 429

            wait_until(lambda: received, 60, "no webhook delivery")
            delivered = received[0]
            assert delivered["type"] == "generation.failed", delivered
            assert "queue_timeout" in str(delivered) and "within 2 s" in str(delivered)
            assert_queue_timeout_in_both_dialects(c.get, gen_id, "2")
            assert inputs_left(home) == []
            assert c.get(f"/v2/video/generations/{busy_id}").json()["status"] == "generating"  # untouched
            again = c.post("/v2/video/generations", json={"model": "test/slow", "prompt": "a place again"})
            assert again.status_code == 200, again.text
            for job_id in (again.json()["id"], busy_id):  # so the server stops without waiting for them
                assert c.post(f"/v2/video/generations/{job_id}/cancel").status_code == 200
    finally:
        server.stop()
