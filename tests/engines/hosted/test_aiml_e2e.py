"""The `aiml` engine end to end: a downstream `clipforge serve` whose models route to `aiml`, pointed at a
second, real `clipforge serve` (the upstream, preview and fixed engines) over HTTP on loopback."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from clipforge.core.job import JobStatus
from clipforge.core.keys import owner_id
from clipforge.jobs.base import open_store
from clipforge.media.probe import decode_frames, probe
from helpers import LiveServer, data_uri, gradient_image, psnr, wait_terminal

I2V = "klingai/video-v2-6-pro-image-to-video"
T2V = "klingai/video-v2-6-pro-text-to-video"
UPSTREAM_KEY = "up-secret-9f3c1e7a"

DOWNSTREAM_MODELS = """
[models."{i2v}"]
task = "i2v"
engines = ["aiml"]

[models."{t2v}"]
task = "t2v"
engines = ["aiml"]

[models."test/slow"]
engines = ["aiml"]

[models."test/medium"]
engines = ["aiml"]

[models."test/fail"]
engines = ["aiml"]

[models."test/unready"]
engines = ["flaky", "fixed"]

[models."test/fal"]
engines = ["fal"]

[engines.aiml]
base_url = "{up}"
api_key_env = "H13_UPSTREAM_KEY"
poll_seconds = 0.2
max_poll_seconds = 0.5
# Text-to-video upstream on the fixed engine (the preview's 1080p scenes take long on 2 cores).
upstream_models = {{ "{t2v}" = "test/fixed" }}

[engines.flaky]
class = "clipforge.engines.hosted.aiml:AimlEngine"
base_url = "{up}"
api_key_env = "H13_UPSTREAM_KEY"
max_retries = 0

[engines.fixed]
steps = 1

[engines.fal]
api_key_env = "H13_FAL_KEY"
"""


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(Path(tmp_path_factory.mktemp("upstream")), keys=(UPSTREAM_KEY,)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def downstream(tmp_path_factory: pytest.TempPathFactory, upstream: LiveServer) -> Iterator[LiveServer]:
    home = Path(tmp_path_factory.mktemp("downstream"))
    (home / "models.toml").write_text(DOWNSTREAM_MODELS.format(i2v=I2V, t2v=T2V, up=upstream.url))
    server = LiveServer(home, extra_env={"H13_UPSTREAM_KEY": UPSTREAM_KEY, "H13_FAL_KEY": "fal-test-key",
                                         "CLIPFORGE_ALLOW_PRIVATE_URLS": "1"}).start()
    yield server
    server.stop()


@pytest.fixture
def client(downstream: LiveServer) -> Iterator[httpx.Client]:
    with downstream.client() as c:
        yield c


def upstream_jobs(upstream: LiveServer) -> list:
    store = open_store(f"sqlite:///{upstream.home / 'clipforge.db'}")
    try:
        return store.list(owner_id(UPSTREAM_KEY), limit=100)
    finally:
        store.close()


def upstream_job(upstream: LiveServer, provider_id: str):
    return next(j for j in upstream_jobs(upstream) if j.id == provider_id)


def fetch(client: httpx.Client, url: str) -> bytes:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content


def test_i2v_with_tail_10s_without_audio_is_rehosted(client: httpx.Client, upstream: LiveServer, tmp_path: Path):
    first, last = gradient_image(480, 320, seed=1), gradient_image(480, 320, seed=7)
    created = client.post("/v2/video/generations", json={
        "model": I2V, "prompt": "a slow push in", "image_url": data_uri(first), "tail_image_url": data_uri(last),
        "duration": 10, "generate_audio": False, "seed": 11})
    assert created.status_code == 200, created.text
    done = wait_terminal(client, created.json()["id"], timeout=90)
    assert done["status"] == "completed", done
    provider = done["meta"]["provider"]
    assert provider["engine"] == "aiml" and provider["upstream_model"] == I2V
    up = upstream_job(upstream, provider["provider_job_id"])  # the upstream ran exactly this request
    assert up.status == JobStatus.COMPLETED
    assert up.params["spec"]["duration"] == 10 and up.params["spec"]["generate_audio"] is False
    assert up.params["spec"]["seed"] == 11 and up.params["spec"]["tail_image"]
    # Our own storage, not the upstream's: the link is on the downstream host and decodes.
    assert done["video"]["url"].startswith(client.base_url.join("/").__str__().rstrip("/"))
    video = tmp_path / "out.mp4"
    video.write_bytes(fetch(client, done["video"]["url"]))
    info = probe(video)
    assert info.audio is None and abs(info.format_duration - 10) < 0.1
    assert (info.video.width, info.video.height) == (480, 320)
    frames = decode_frames(video, [0, info.video.frames - 1])
    assert psnr(frames[0], np.asarray(Image.open(io.BytesIO(first)).convert("RGB"))) > 28
    assert psnr(frames[1], np.asarray(Image.open(io.BytesIO(last)).convert("RGB"))) > 28
    thumb = fetch(client, done["output"]["thumbnail_url"])
    assert Image.open(io.BytesIO(thumb)).size == (480, 320)


def test_t2v_with_audio_through_a_mapped_upstream_model(client: httpx.Client, upstream: LiveServer,
                                                        tmp_path: Path):
    created = client.post("/v2/video/generations", json={"model": T2V, "prompt": "rain on a tin roof",
                                                        "aspect_ratio": "1:1"})
    assert created.status_code == 200, created.text
    done = wait_terminal(client, created.json()["id"], timeout=90)
    assert done["status"] == "completed", done
    assert done["meta"]["provider"]["upstream_model"] == "test/fixed"
    assert upstream_job(upstream, done["meta"]["provider"]["provider_job_id"]).model == "test/fixed"
    video = tmp_path / "t2v.mp4"
    video.write_bytes(fetch(client, done["video"]["url"]))
    info = probe(video)
    assert info.audio is not None and abs(info.format_duration - 5) < 0.1
    assert (info.video.width, info.video.height) == (1080, 1080)
    sprites = client.get(f"/v1/videos/{done['id']}/content", params={"variant": "spritesheet"})
    assert sprites.status_code == 200 and sprites.headers["content-type"] == "image/jpeg"


class Receiver(ThreadingHTTPServer):
    """Collects webhook bodies."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                outer.bodies.append(self.rfile.read(int(self.headers["content-length"])))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def test_upstream_failure_reaches_the_user_prefixed_and_its_webhook_holds_no_key(client: httpx.Client):
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    created = client.post("/v2/video/generations", json={"model": "test/fail", "prompt": "x", "webhook_url": hook})
    done = wait_terminal(client, created.json()["id"], timeout=60)
    assert done["status"] == "error"
    assert done["error"]["message"] == "aiml: the test engine always fails"
    deadline = time.time() + 20
    while not receiver.bodies and time.time() < deadline:
        time.sleep(0.1)
    receiver.shutdown()
    assert receiver.bodies and b"aiml: the test engine always fails" in receiver.bodies[0]
    assert UPSTREAM_KEY.encode() not in b"".join(receiver.bodies)


def test_transient_upstream_failure_fails_over_to_the_next_engine(client: httpx.Client):
    # The upstream answers 503 (its engine for this model is not ready): `flaky` gives up at once and the
    # job moves to `fixed`, the next engine of the route, which finishes it.
    created = client.post("/v2/video/generations", json={"model": "test/unready", "prompt": "x",
                                                        "image_url": data_uri(gradient_image(480, 320))})
    done = wait_terminal(client, created.json()["id"], timeout=60)
    assert done["status"] == "completed", done
    assert "provider" not in done["meta"]
    listed = client.get(f"/v1/videos/{done['id']}").json()
    assert listed["status"] == "completed"


def wait_upstream_running(upstream: LiveServer, prompt: str, timeout: float = 30) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for job in upstream_jobs(upstream):
            if job.params["spec"]["prompt"] == prompt and job.status == JobStatus.RUNNING:
                return job.id
        time.sleep(0.1)
    raise TimeoutError(f"no running upstream job for {prompt!r}")


def test_cancel_propagates_upstream(client: httpx.Client, upstream: LiveServer):
    image = data_uri(gradient_image(480, 320, seed=3))
    created = client.post("/v2/video/generations", json={"model": "test/slow", "prompt": "cancel me",
                                                        "image_url": image})
    up_id = wait_upstream_running(upstream, "cancel me")
    assert client.post(f"/v2/video/generations/{created.json()['id']}/cancel").status_code == 200
    done = wait_terminal(client, created.json()["id"], timeout=30)
    assert done["error"]["name"] == "Cancelled"
    deadline = time.time() + 15
    while upstream_job(upstream, up_id).status != JobStatus.CANCELLED and time.time() < deadline:
        time.sleep(0.1)
    assert upstream_job(upstream, up_id).status == JobStatus.CANCELLED


def test_deleting_a_running_hosted_job_cancels_it_upstream(client: httpx.Client, upstream: LiveServer):
    """DELETE /v1/videos/{id} removes the row at once; the worker must still stop the upstream job (it
    spends the operator's credits), not treat the vanished row as a lease lost to another worker."""
    image = data_uri(gradient_image(480, 320, seed=4))
    created = client.post("/v2/video/generations", json={"model": "test/slow", "prompt": "delete me",
                                                        "image_url": image})
    up_id = wait_upstream_running(upstream, "delete me")
    deleted = client.delete(f"/v1/videos/{created.json()['id']}")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    deadline = time.time() + 15
    while upstream_job(upstream, up_id).status != JobStatus.CANCELLED and time.time() < deadline:
        time.sleep(0.1)
    assert upstream_job(upstream, up_id).status == JobStatus.CANCELLED


def test_restarted_downstream_resumes_the_same_upstream_job(client: httpx.Client, downstream: LiveServer,
                                                            upstream: LiveServer):
    image = data_uri(gradient_image(480, 320, seed=5))
    created = client.post("/v2/video/generations", json={"model": "test/medium", "prompt": "survive a restart",
                                                        "image_url": image})
    gen_id = created.json()["id"]
    up_id = wait_upstream_running(upstream, "survive a restart")
    downstream.kill()  # api and worker die mid-job, while the upstream keeps generating
    downstream.start()
    done = wait_terminal(client, gen_id, timeout=90)
    assert done["status"] == "completed", done
    assert done["meta"]["provider"]["provider_job_id"] == up_id
    submitted = [j for j in upstream_jobs(upstream) if j.params["spec"]["prompt"] == "survive a restart"]
    assert len(submitted) == 1  # resumed polling; never submitted twice


def test_fields_the_routed_provider_cannot_do_are_refused_at_create(client: httpx.Client):
    image = data_uri(gradient_image(480, 320))
    seeded = client.post("/v2/video/generations", json={"model": "test/fal", "prompt": "x", "seed": 5})
    assert seeded.status_code == 400
    assert seeded.json()["message"].startswith("seed: the engine 'fal'")
    cfg = client.post("/v2/video/generations", json={"model": "test/fal", "prompt": "x", "image_url": image,
                                                    "cfg_scale": 0.8})
    assert cfg.status_code == 400 and cfg.json()["message"].startswith("cfg_scale:")
    listed = {m["id"]: m for m in client.get("/v1/models").json()["data"]}["test/fal"]["engines"][0]
    assert listed["limits"] == {"seed": None, "i2v.cfg_scale": None}  # what clients can read up front
    ok = client.post("/v2/video/generations", json={"model": "test/fal", "prompt": "x", "cfg_scale": 0.8})
    assert ok.status_code == 200  # text-to-video on fal takes cfg_scale
    client.post(f"/v2/video/generations/{ok.json()['id']}/cancel")


def test_the_upstream_key_never_reaches_store_or_logs(client: httpx.Client, downstream: LiveServer):
    seen = client.get("/v1/models").text
    assert UPSTREAM_KEY not in seen
    for path in downstream.home.rglob("*"):
        if path.is_file() and path.name != "models.toml":
            assert UPSTREAM_KEY.encode() not in path.read_bytes(), path


def test_a_refused_key_makes_aiml_not_ready_with_a_reason(upstream: LiveServer, monkeypatch):
    from clipforge.engines.registry import engine_readiness

    config = {"base_url": upstream.url, "api_key_env": "H13_CHECKED_KEY"}
    monkeypatch.setenv("H13_CHECKED_KEY", "not-the-key")
    state = engine_readiness("aiml", config)
    assert not state.ready and "refused the key in H13_CHECKED_KEY (HTTP 401)" in state.reason
    assert "not-the-key" not in state.reason
    monkeypatch.setenv("H13_CHECKED_KEY", UPSTREAM_KEY)
    assert engine_readiness("aiml", config).ready
