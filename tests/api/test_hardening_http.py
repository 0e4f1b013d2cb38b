"""Holes found by an audit, closed over real HTTP: the quota race, inputs left behind, `/media` paths,
SSE streams of deleted jobs."""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
from pathlib import Path

import httpx
import pytest

from helpers import LiveServer, data_uri, gradient_image, wait_terminal

IMAGE = data_uri(gradient_image(400, 400))
KEYS_TOML = """
[defaults]
requests_per_minute = 100000
max_active_jobs = 4
"""


@pytest.fixture(scope="module")
def quota_server(tmp_path_factory: pytest.TempPathFactory):
    home = Path(tmp_path_factory.mktemp("quota"))
    keys = home / "keys.toml"
    keys.write_text(KEYS_TOML)
    server = LiveServer(home / "home", keys=("quota-key",),
                        extra_env={"CLIPFORGE_KEYS_FILE": str(keys)}).start()
    yield server
    server.stop()


async def blast(server: LiveServer, n: int, body: dict) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers(0), timeout=60) as client:
        return await asyncio.gather(*(client.post("/v2/video/generations", json=body) for _ in range(n)))


def test_simultaneous_creates_accept_exactly_the_quota(quota_server: LiveServer):
    client = httpx.Client(base_url=quota_server.url, headers=quota_server.headers(0), timeout=60)
    body = {"model": "test/slow", "prompt": "quota race", "image_url": IMAGE}
    first = client.post("/v2/video/generations", json=body, headers={"Idempotency-Key": "retry-me"})
    assert first.status_code == 200, first.text
    responses = asyncio.run(blast(quota_server, 30, body))
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 3 and codes.count(429) == 27, codes  # 4 in all with the first
    refused = next(r for r in responses if r.status_code == 429)
    assert "4 generations queued or running" in refused.json()["message"] and refused.headers["Retry-After"]
    # An idempotent retry of the accepted job gets it back although the quota is full.
    again = client.post("/v2/video/generations", json=body, headers={"Idempotency-Key": "retry-me"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert client.post("/v2/video/generations", json=body, headers={"Idempotency-Key": "new"}).status_code == 429
    # Every create path of both dialects meets the same quota.
    assert client.post("/v1/videos", json={"model": "test/slow", "prompt": "openai"}).status_code == 429
    assert client.post(f"/v1/videos/{first.json()['id']}/remix", json={"prompt": "again"}).status_code == 429
    # Refused creates left no input images behind: one folder per accepted job.
    assert len(list((quota_server.home / "media" / "inputs").iterdir())) == 4
    ids = [first.json()["id"]] + [r.json()["id"] for r in responses if r.status_code == 200]
    for gen_id in ids:
        client.delete(f"/v2/video/generations/{gen_id}")
    for gen_id in ids:
        wait_terminal(client, gen_id, timeout=20)
    # Cancelled jobs keep no inputs (queued ones at once, the running one when its worker stops).
    deadline = time.time() + 10
    while list((quota_server.home / "media" / "inputs").iterdir()) and time.time() < deadline:
        time.sleep(0.1)
    assert list((quota_server.home / "media" / "inputs").iterdir()) == []


def raw_get(server: LiveServer, path: str) -> int:
    """GET with the path sent exactly as written (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def test_media_serves_outputs_only(live_server: LiveServer, tmp_path: Path):
    client = httpx.Client(base_url=live_server.url, headers=live_server.headers(1), timeout=30)
    r = client.post("/v2/video/generations", json={"model": "test/fixed", "prompt": "media", "image_url": IMAGE})
    assert r.status_code == 200, r.text
    done = wait_terminal(client, r.json()["id"])
    video = httpx.URL(done["video"]["url"]).path
    token = video.split("/")[2]
    assert raw_get(live_server, video) == 200
    media = live_server.home / "media"
    (inputs_token,) = [p.name for p in (media / "inputs").iterdir()]
    image = next((media / "inputs" / inputs_token).iterdir()).name
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "output.mp4").write_bytes(b"secret")
    (media / ("L" * 32)).symlink_to(outside, target_is_directory=True)
    (media / ("F" * 32)).mkdir()
    (media / ("F" * 32) / "output.mp4").symlink_to(outside / "output.mp4")
    for path in [f"/media/inputs/{inputs_token}/{image}", f"/media/./inputs/{inputs_token}/{image}",
                 f"/media/%2e/inputs/{inputs_token}/{image}", f"/media/%2E/inputs/{inputs_token}/{image}",
                 f"/media/{token}/../inputs/{inputs_token}/{image}", f"/media/{token}/%2e%2e/{token}/output.mp4",
                 "/media//etc/passwd", "/media/%2Fetc/passwd", f"/media/{token}/output.mp4%00",
                 f"/media/{token}%00/output.mp4", "/media/" + "a" * 5000, f"/media/{token}/" + "b" * 300,
                 f"/media/{'L' * 32}/output.mp4", f"/media/{'F' * 32}/output.mp4", "/media/clipforge.db",
                 f"/media/{token}/output.mp4/", f"/media/{token}", "/media/"]:
        assert raw_get(live_server, path) == 404, path


def test_sse_stream_of_a_deleted_job_ends(live_server: LiveServer):
    client = httpx.Client(base_url=live_server.url, headers=live_server.headers(1), timeout=30)
    gen_id = client.post("/v2/video/generations", json={"model": "test/slow", "prompt": "sse"}).json()["id"]
    ended = threading.Event()

    def read() -> None:
        with client.stream("GET", f"/v2/video/generations/{gen_id}/events", timeout=60) as r:
            for _ in r.iter_lines():
                pass
        ended.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(1.0)
    assert not ended.is_set()
    assert client.delete(f"/v1/videos/{gen_id}").status_code == 200
    assert ended.wait(10), "the stream kept going after its job was deleted"


def test_a_key_may_hold_only_so_many_event_streams_open(quota_server: LiveServer):
    """Each SSE stream is one request to the rate limit but holds the api (polling the store four times a
    second) for as long as it stays open: past MAX_EVENT_STREAMS open at once, a key gets a 429."""
    from clipforge.api.limits import MAX_EVENT_STREAMS

    async def run() -> None:
        async with httpx.AsyncClient(base_url=quota_server.url, headers=quota_server.headers(0),
                                     timeout=30) as client:
            gen_id = (await client.post("/v2/video/generations",
                                        json={"model": "test/slow", "prompt": "watched"})).json()["id"]
            url = f"/v2/video/generations/{gen_id}/events"
            streams, readers = [], []
            for _ in range(MAX_EVENT_STREAMS):
                response = await client.send(client.build_request("GET", url), stream=True)
                assert response.status_code == 200
                lines = response.aiter_lines()
                assert await lines.__anext__() == "retry: 2000"  # the stream is open
                streams.append(response)
                readers.append(lines)  # kept: a dropped line iterator may close its stream
            refused = await client.get(url)
            assert refused.status_code == 429, refused.text
            assert refused.json()["message"].startswith(f"rate limit: this key may hold {MAX_EVENT_STREAMS} event")
            await streams.pop().aclose()
            for _ in range(50):  # the server notices the closed stream within its 0.25 s poll
                again = await client.send(client.build_request("GET", url), stream=True)
                if again.status_code == 200:
                    streams.append(again)
                    break
                await again.aclose()
                await asyncio.sleep(0.1)
            assert streams[-1].status_code == 200 and len(streams) == MAX_EVENT_STREAMS
            for stream in streams:
                await stream.aclose()
            await client.post(f"/v2/video/generations/{gen_id}/cancel")

    asyncio.run(run())
