"""The webhook dispatcher on its own: a memory store, a mock transport and a fake resolver, so the
DNS answer can change between create and delivery."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import httpx
import pytest

from clipforge.core.job import Job, JobStatus, new_job_id
from clipforge.core.settings import Settings
from clipforge.jobs.memory import MemoryJobStore
from clipforge.storage.local import LocalArtifactStore
from clipforge.worker.webhooks import WebhookDispatcher, sign


class Net:
    """DNS answers and the requests that reached the 'network'."""

    def __init__(self, answer: int = 200) -> None:
        self.dns: dict[str, list[str]] = {"hooks.example.com": ["93.184.216.34"]}
        self.requests: list[httpx.Request] = []
        self.answer = answer

    def resolve(self, host: str, port: int) -> list[str]:
        if host not in self.dns:
            raise OSError("no such host")
        return self.dns[host]

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return httpx.Response(self.answer)

        return httpx.MockTransport(handle)


def setup(tmp_path, net: Net, public_url: str | None = "https://video.example.org", events=None):
    store = MemoryJobStore()
    settings = Settings(home=tmp_path, public_url=public_url, webhook_backoff_seconds=0.1)
    dispatcher = WebhookDispatcher(store, LocalArtifactStore(tmp_path / "media"), settings,
                                   transport=net.transport(), resolver=net.resolve)
    webhook = {"url": "https://hooks.example.com/in?x=1", **({"events": events} if events else {})}
    job = Job(id=new_job_id("test/fixed"), owner="alice", model="test/fixed", engine="fixed",
              params={"spec": {"prompt": "a fox", "duration": 5, "seed": 7}}, webhook=webhook)
    store.create(job)
    store.claim("w1", ["fixed"], 60)
    store.finish(job.id, "w1", JobStatus.COMPLETED, expires_at=time.time() + 3600,
                 outputs={"video": f"{job.media_token}/video.mp4", "thumbnail": f"{job.media_token}/thumb.jpg",
                          "has_audio": True, "width": 640, "height": 640})
    return store, dispatcher, job


def test_a_delivery_is_signed_pinned_and_carries_the_generation(tmp_path):
    net = Net()
    store, dispatcher, job = setup(tmp_path, net)
    assert dispatcher.run_once() == 1
    [request] = net.requests
    assert request.method == "POST" and request.url.host == "93.184.216.34"  # the checked address itself
    assert request.url.path == "/in" and request.url.query == b"x=1"
    assert request.headers["host"] == "hooks.example.com"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    secret = store.webhook_secret("alice")
    msg_id, ts = request.headers["webhook-id"], request.headers["webhook-timestamp"]
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + request.content,
                                         hashlib.sha256).digest()).decode()
    assert request.headers["webhook-signature"] == f"v1,{expected}" == sign(secret, msg_id, int(ts), request.content)
    body = json.loads(request.content)
    assert body["type"] == "generation.completed"
    assert body["data"]["video_url"] == f"https://video.example.org/media/{job.media_token}/video.mp4"
    assert body["data"]["thumbnail_url"].endswith("/thumb.jpg")
    assert (body["data"]["status"], body["data"]["seed"], body["data"]["width"]) == ("completed", 7, 640)
    [row] = store.deliveries(job.id)
    assert (row["status"], row["attempts"]) == ("delivered", 1)
    assert dispatcher.run_once() == 0


def test_the_guard_runs_again_at_delivery(tmp_path):
    net = Net()
    store, dispatcher, job = setup(tmp_path, net)
    net.dns["hooks.example.com"] = ["10.1.2.3"]  # rebound to a private address after create
    dispatcher.run_once()
    assert net.requests == []
    [row] = store.deliveries(job.id)
    assert row["status"] == "pending" and row["attempts"] == 1
    assert "webhook_url" in row["last_error"] and "private" in row["last_error"]


def test_failures_back_off_then_succeed(tmp_path):
    net = Net(answer=503)
    store, dispatcher, job = setup(tmp_path, net)
    dispatcher.run_once()
    [row] = store.deliveries(job.id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("pending", 1, "HTTP 503")
    assert row["next_attempt_at"] == pytest.approx(time.time() + 0.1, abs=0.05)
    assert dispatcher.run_once() == 0  # not due yet
    time.sleep(0.15)
    dispatcher.run_once()
    assert store.deliveries(job.id)[0]["next_attempt_at"] == pytest.approx(time.time() + 0.2, abs=0.05)
    net.answer = 204
    time.sleep(0.25)
    dispatcher.run_once()
    assert [r.headers["webhook-id"] for r in net.requests] == [row["id"]] * 3
    assert store.deliveries(job.id)[0]["status"] == "delivered"


def test_gives_up_after_the_window_and_on_deleted_jobs(tmp_path):
    net = Net(answer=500)
    store, dispatcher, job = setup(tmp_path, net)
    store._deliveries[store.deliveries(job.id)[0]["id"]]["created_at"] -= 25 * 3600  # enqueued a day ago
    dispatcher.run_once()
    assert store.deliveries(job.id)[0]["status"] == "failed"

    store2, dispatcher2, job2 = setup(tmp_path, Net())
    store2.delete(job2.id, "alice")
    dispatcher2.run_once()
    assert store2.deliveries(job2.id)[0]["status"] == "failed"
    assert "deleted" in store2.deliveries(job2.id)[0]["last_error"]


def test_without_a_public_url_media_links_are_null(tmp_path):
    net = Net()
    _, dispatcher, _ = setup(tmp_path, net, public_url=None)
    dispatcher.run_once()
    data = json.loads(net.requests[0].content)["data"]
    assert data["video_url"] is None and data["status"] == "completed"


def test_the_thread_sends_and_stops(tmp_path):
    net = Net()
    store, dispatcher, job = setup(tmp_path, net)
    dispatcher.start()
    try:
        deadline = time.time() + 5
        while store.deliveries(job.id)[0]["status"] != "delivered":
            assert time.time() < deadline
            time.sleep(0.02)
    finally:
        dispatcher.stop()
    assert dispatcher._thread is None
