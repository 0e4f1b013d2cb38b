"""Webhooks and queue ETAs over real HTTP: a `clipforge serve` posts to a receiver in the test, which
checks Standard Webhooks signatures against the secret read from GET /v1/webhooks/secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from helpers import LiveServer, free_port, wait_terminal

BACKOFF = 0.2


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def json(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers from a per-path script."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[Received] = []
        self.scripts: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    script = receiver.scripts.get(self.path, [])
                    status = script.pop(0) if script else 200
                    receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                      body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 30, ok_only: bool = False) -> list[Received]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = [r for r in self.at(path) if not ok_only or r.answered < 300]
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise TimeoutError(f"{path}: {len(self.at(path))} deliveries, wanted {count}")


def verify(secret: str, r: Received) -> bool:
    """Standard Webhooks verification, written from the spec (not from the server's code)."""
    msg_id, timestamp = r.headers["webhook-id"], r.headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > 300:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.".encode() + r.body,
                                         hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(sig.partition(",")[2], expected)
               for sig in r.headers["webhook-signature"].split() if sig.startswith("v1,"))


def delivery_rows(home: Path, job_id: str) -> list[dict]:
    with sqlite3.connect(home / "clipforge.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM webhook_deliveries WHERE job_id = ?", (job_id,))]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(Path(tmp_path_factory.mktemp("webhooks")), extra_env={
        "CLIPFORGE_ALLOW_PRIVATE_URLS": "1", "CLIPFORGE_WEBHOOK_BACKOFF_SECONDS": str(BACKOFF)}).start()
    yield live
    live.stop()


@pytest.fixture
def c(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def create(c: httpx.Client, model: str = "test/fixed", **extra) -> str:
    r = c.post("/v2/video/generations", json={"model": model, "prompt": "webhooks", "aspect_ratio": "1:1", **extra})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def secret(c: httpx.Client) -> str:
    r = c.get("/v1/webhooks/secret")
    assert r.status_code == 200, r.text
    return r.json()["secret"]


def test_500_twice_then_200_gives_one_signed_delivery_in_three_attempts(c, server, receiver):
    receiver.scripts["/retry"] = [500, 500]
    gen_id = create(c, webhook_url=receiver.url("/retry"))
    attempts = receiver.wait_for("/retry", 3)
    time.sleep(8 * BACKOFF)  # room for a wrong fourth attempt
    attempts = receiver.at("/retry")
    assert [a.answered for a in attempts] == [500, 500, 200]
    key = secret(c)
    assert all(verify(key, a) for a in attempts)
    assert len({a.headers["webhook-id"] for a in attempts}) == 1  # one message, retried
    assert attempts[0].headers["webhook-id"].startswith("msg_")
    gap = int(attempts[2].headers["webhook-timestamp"]) - int(attempts[0].headers["webhook-timestamp"])
    assert 0 <= gap <= 5
    event = attempts[2].json
    assert event["type"] == "generation.completed" and event["timestamp"].endswith("Z")
    data = event["data"]
    assert (data["id"], data["status"], data["progress"], data["error"]) == (gen_id, "completed", 100, None)
    assert data["video_url"].startswith(server.url + "/media/")  # serve's own URL by default
    video = httpx.get(data["video_url"], timeout=30)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    assert data["video_url"] == c.get(f"/v2/video/generations/{gen_id}").json()["video"]["url"]
    [row] = delivery_rows(server.home, gen_id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("delivered", 3, None)
    # a signature made with another secret, or over another body, does not verify
    assert not verify("whsec_" + base64.b64encode(b"x" * 24).decode(), attempts[2])
    tampered = Received("/retry", attempts[2].headers, attempts[2].body.replace(b"completed", b"failed__"), 200)
    assert not verify(key, tampered)


def test_started_events_when_asked_and_failed_for_failures_and_cancels(c, receiver):
    gen_id = create(c, webhook_url=receiver.url("/both"), webhook_events=["started", "completed"])
    got = receiver.wait_for("/both", 2)
    assert [g.json["type"] for g in got] == ["generation.started", "generation.completed"]
    assert all(g.json["data"]["id"] == gen_id for g in got)

    failing = create(c, "test/fail", webhook_url=receiver.url("/fail"))  # default: completed and failed
    [fail] = receiver.wait_for("/fail", 1)
    assert fail.json["type"] == "generation.failed"
    assert fail.json["data"]["id"] == failing and fail.json["data"]["status"] == "error"
    assert "always fails" in fail.json["data"]["error"]["message"]

    running = create(c, "test/slow")
    queued = create(c, "test/slow", webhook_url=receiver.url("/cancel"), webhook_events=["failed"])
    assert c.delete(f"/v2/video/generations/{queued}").status_code == 200
    [cancelled] = receiver.wait_for("/cancel", 1)
    assert cancelled.json["type"] == "generation.failed"
    assert cancelled.json["data"]["error"]["name"] == "Cancelled"
    c.delete(f"/v2/video/generations/{running}")
    wait_terminal(c, running)
    time.sleep(4 * BACKOFF)
    assert len(receiver.at("/both")) == 2 and len(receiver.at("/cancel")) == 1


def test_rotate_changes_the_secret_and_later_deliveries_use_it(c, server, receiver):
    before = secret(c)
    assert secret(c) == before
    r = c.post("/v1/webhooks/secret/rotate")
    assert r.status_code == 200 and r.json()["rotated"] is True
    after = r.json()["secret"]
    assert after != before and after.startswith("whsec_") and secret(c) == after
    other_key = httpx.get(server.url + "/v1/webhooks/secret", headers=server.headers(1)).json()["secret"]
    assert other_key not in (before, after)  # per key
    create(c, webhook_url=receiver.url("/rotated"))
    [got] = receiver.wait_for("/rotated", 1)
    assert verify(after, got) and not verify(before, got)
    assert httpx.get(server.url + "/v1/webhooks/secret").status_code == 401


def test_bad_webhook_fields_are_400s_naming_the_field(c):
    for body, field in (({"webhook_url": "ftp://example.com/x"}, "webhook_url"),
                        ({"webhook_url": 12}, "webhook_url"),
                        ({"webhook_url": "http://example.com/x", "webhook_events": ["finished"]}, "webhook_events"),
                        ({"webhook_events": ["started"]}, "webhook_events")):
        r = c.post("/v2/video/generations", json={"model": "test/fixed", "prompt": "x", **body})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == field and field in r.json()["message"]


def test_private_webhook_url_without_the_allow_setting_is_a_400(live_server: LiveServer):
    with live_server.client() as client:
        for url in ("http://127.0.0.1:9/hook", "http://10.0.0.5/hook", "http://169.254.169.254/latest"):
            r = client.post("/v2/video/generations", json={"model": "test/fixed", "prompt": "x", "webhook_url": url})
            assert r.status_code == 400, r.text
            assert r.json()["error"]["param"] == "webhook_url" and "webhook_url" in r.json()["message"]
            assert "private" in r.json()["message"]


def test_delivered_once_across_a_hard_restart(tmp_path: Path):
    down = Receiver()  # its port refuses connections until it starts
    live = LiveServer(tmp_path / "home", extra_env={"CLIPFORGE_ALLOW_PRIVATE_URLS": "1",
                                                    "CLIPFORGE_WEBHOOK_BACKOFF_SECONDS": str(BACKOFF)}).start()
    try:
        with live.client() as c:
            gen_id = create(c, webhook_url=down.url("/restart"))
            assert wait_terminal(c, gen_id)["status"] == "completed"
            deadline = time.time() + 30
            while not (rows := delivery_rows(live.home, gen_id)) or rows[0]["attempts"] < 1:
                assert time.time() < deadline, rows
                time.sleep(0.05)
            assert rows[0]["status"] == "pending" and "connect" in rows[0]["last_error"]
            live.kill()
            up = down.start()
            try:
                time.sleep(1.0)
                assert up.at("/restart") == []  # nobody is left to send it
                live.start()
                key = secret(c)
                [got] = up.wait_for("/restart", 1, timeout=150)
                time.sleep(8 * BACKOFF)
                assert len(up.at("/restart")) == 1 and got.answered == 200
                assert verify(key, got) and got.json["data"]["id"] == gen_id
                assert got.json["type"] == "generation.completed"
                [row] = delivery_rows(live.home, gen_id)
                assert row["status"] == "delivered" and row["attempts"] >= 2
            finally:
                up.stop()
    finally:
        live.stop()


def test_queued_job_behind_a_running_one_shows_an_eta(c):
    first = create(c, "test/medium")  # 8 steps of 0.25 s: gives the engine a run time
    assert wait_terminal(c, first)["status"] == "completed"
    running = create(c, "test/medium")
    queued = create(c, "test/medium")
    deadline = time.time() + 20
    while c.get(f"/v2/video/generations/{running}").json()["status"] != "generating":
        assert time.time() < deadline
        time.sleep(0.05)
    body = c.get(f"/v2/video/generations/{queued}").json()
    assert body["status"] == "queued" and body["queue_position"] == 0
    assert body["eta_seconds"] > 0 and body["eta_seconds"] < 60, body
    assert c.get(f"/v2/video/generations/{running}").json()["eta_seconds"] is None
    for gen_id in (running, queued):
        c.delete(f"/v2/video/generations/{gen_id}")


def test_openai_dialect_create_takes_a_webhook(c, receiver):
    r = c.post("/v1/videos", data={"model": "test/fixed", "prompt": "openai hook", "seconds": "5",
                                   "size": "480x270", "webhook_url": receiver.url("/openai")})
    assert r.status_code == 200, r.text
    got = receiver.wait_for("/openai", 1, ok_only=True)
    assert verify(secret(c), got[0])
    assert got[0].json["type"] == "generation.completed" and got[0].json["data"]["id"] == r.json()["id"]
    bad = c.post("/v1/videos", data={"model": "test/fixed", "prompt": "x", "webhook_url": "ftp://x"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "webhook_url"
