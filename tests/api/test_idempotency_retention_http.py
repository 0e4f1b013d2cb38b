"""Idempotent creates and output retention over real HTTP."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from clipforge.core.keys import owner_id
from clipforge.jobs.sqlite import SQLiteJobStore
from helpers import LiveServer, data_uri, gradient_image, wait_terminal


def test_idempotent_create_under_concurrency(live_server: LiveServer, client: httpx.Client):
    body = {"model": "test/fixed", "prompt": "same", "seed": 7,
            "image_url": data_uri(gradient_image(400, 400))}
    headers = {**live_server.headers(1), "Idempotency-Key": "order-42"}

    def post(_: int) -> httpx.Response:
        return httpx.post(f"{live_server.url}/v2/video/generations", json=body, headers=headers, timeout=60)

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(post, range(20)))
    assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses if r.status_code != 200]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    store = SQLiteJobStore(live_server.home / "clipforge.db")
    assert [j.id for j in store.list(owner_id(live_server.keys[1]), limit=100)] == list(ids)
    # only the winner's input image was kept
    assert len(list((live_server.home / "media" / "inputs").iterdir())) == 1
    changed = httpx.post(f"{live_server.url}/v2/video/generations", json={**body, "prompt": "different"},
                         headers=headers)
    assert changed.status_code == 409 and "Idempotency-Key" in changed.json()["message"]
    # the same key under another API key is independent
    other = client.post("/v2/video/generations", json=body, headers={"Idempotency-Key": "order-42"})
    assert other.status_code == 200 and other.json()["id"] not in ids


def test_outputs_expire_and_files_are_removed(tmp_path: Path):
    server = LiveServer(tmp_path, extra_env={"CLIPFORGE_RETENTION_HOURS": str(3 / 3600)}).start()
    try:
        c = httpx.Client(base_url=server.url, headers=server.headers(), timeout=30)
        gen_id = c.post("/v2/video/generations", json={"model": "test/fixed", "prompt": "short-lived"}).json()["id"]
        done = wait_terminal(c, gen_id)
        assert done["status"] == "completed" and done["expires_at"] >= int(time.time())
        video_url = done["video"]["url"]
        assert httpx.get(video_url).status_code == 200
        deadline = time.time() + 20
        while (body := c.get(f"/v2/video/generations/{gen_id}").json())["error"] is None:
            assert time.time() < deadline, body
            time.sleep(0.25)
        assert body["status"] == "error" and body["error"]["name"] == "Expired"
        assert "expired" in body["error"]["message"] and body["video"] is None
        assert httpx.get(video_url).status_code == 404
        token_dir = tmp_path / "media" / video_url.split("/media/")[1].split("/")[0]
        assert not token_dir.exists()
    finally:
        server.stop()


BAD_KEYS = [("k" * 256, "max_length", "at most 255 characters, got 256"),
            (b"caf\xc3\xa9", "printable_ascii", "printable ASCII"),
            (b"a\tb", "printable_ascii", "printable ASCII")]


@pytest.mark.parametrize(("value", "rule", "says"), BAD_KEYS, ids=["too-long", "non-ascii", "tab"])
@pytest.mark.parametrize("dialect", ["aiml", "openai", "remix"])
def test_bad_idempotency_keys_are_a_400_naming_the_header(client: httpx.Client, dialect: str, value, rule: str,
                                                          says: str):
    before = len(client.get("/v1/videos", params={"limit": 100}).json()["data"])
    headers = {"Idempotency-Key": value}
    if dialect == "aiml":
        r = client.post("/v2/video/generations", json={"model": "test/fixed", "prompt": "k"}, headers=headers)
    elif dialect == "openai":
        r = client.post("/v1/videos", json={"model": "test/fixed", "prompt": "k"}, headers=headers)
    else:
        source = client.post("/v1/videos", json={"model": "test/fixed", "prompt": "source"}).json()["id"]
        before += 1
        r = client.post(f"/v1/videos/{source}/remix", json={"prompt": "k"}, headers=headers)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["message"].startswith("Idempotency-Key: ") and says in body["message"], body
    assert (body["error"]["param"], body["error"]["code"]) == ("Idempotency-Key", rule)
    assert body["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert len(client.get("/v1/videos", params={"limit": 100}).json()["data"]) == before  # nothing queued


def test_idempotency_keys_up_to_255_printable_characters_are_kept(client: httpx.Client):
    for key in ("k" * 255, "order 42/~!{}\"'"):
        body = {"model": "test/fixed", "prompt": f"limits {len(key)}"}
        first = client.post("/v2/video/generations", json=body, headers={"Idempotency-Key": key})
        assert first.status_code == 200, first.text
        again = client.post("/v2/video/generations", json=body, headers={"Idempotency-Key": key})
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
