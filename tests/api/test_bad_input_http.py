"""Bad input over real HTTP: each case is a 4xx naming the field; nothing is queued; the server stays up."""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from PIL import Image

from helpers import LiveServer, data_uri, gradient_image

I2V = "klingai/video-v2-6-pro-image-to-video"
T2V = "klingai/video-v2-6-pro-text-to-video"
GOOD = data_uri(gradient_image(400, 400))


def image_bytes(w: int, h: int, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (90, 120, 200)).save(buf, format=fmt)
    return buf.getvalue()


CASES = [
    ({"prompt": "x"}, 400, "model"),
    ({"model": "nope/model", "prompt": "x"}, 400, "model"),
    ({"model": 5, "prompt": "x"}, 400, "model"),
    ({"model": T2V}, 400, "prompt"),
    ({"model": T2V, "prompt": ""}, 400, "prompt"),
    ({"model": T2V, "prompt": "   "}, 400, "prompt"),
    ({"model": T2V, "prompt": "x" * 2501}, 400, "prompt"),
    ({"model": T2V, "prompt": ["x"]}, 400, "prompt"),
    ({"model": T2V, "prompt": "x", "duration": 7}, 400, "duration"),
    ({"model": T2V, "prompt": "x", "duration": "five"}, 400, "duration"),
    ({"model": T2V, "prompt": "x", "duration": True}, 400, "duration"),
    ({"model": T2V, "prompt": "x", "aspect_ratio": "4:3"}, 400, "aspect_ratio"),
    ({"model": T2V, "prompt": "x", "cfg_scale": 1.5}, 400, "cfg_scale"),
    ({"model": T2V, "prompt": "x", "cfg_scale": "high"}, 400, "cfg_scale"),
    ({"model": T2V, "prompt": "x", "generate_audio": "maybe"}, 400, "generate_audio"),
    ({"model": T2V, "prompt": "x", "seed": -1}, 400, "seed"),
    ({"model": T2V, "prompt": "x", "seed": 2**40}, 400, "seed"),
    ({"model": T2V, "prompt": "x", "negative_prompt": "n" * 2501}, 400, "negative_prompt"),
    ({"model": I2V, "prompt": "x"}, 400, "image_url"),
    ({"model": T2V, "prompt": "x", "image_url": GOOD}, 400, "image_url"),
    ({"model": I2V, "prompt": "x", "image_url": "ftp://example.com/a.png"}, 400, "image_url"),
    ({"model": I2V, "prompt": "x", "image_url": "file:///etc/passwd"}, 400, "image_url"),
    ({"model": I2V, "prompt": "x", "image_url": "not an image"}, 400, "image_url"),
    ({"model": I2V, "prompt": "x", "image_url": data_uri(image_bytes(200, 400))}, 400, "image_url"),
    ({"model": I2V, "prompt": "x", "image_url": data_uri(image_bytes(1200, 400))}, 400, "image_url"),
    ({"model": I2V, "prompt": "x", "image_url": data_uri(image_bytes(400, 400, "GIF"), "image/gif")}, 400,
     "image_url"),
    ({"model": I2V, "prompt": "x", "image_url": base64.b64encode(image_bytes(400, 400, "BMP")).decode()}, 400,
     "image_url"),
    ({"model": I2V, "prompt": "x", "image_url": data_uri(image_bytes(400, 400)[:200])}, 400, "image_url"),
    ({"model": I2V, "prompt": "x", "image_url": "http://127.0.0.1:1/a.png"}, 400, "image_url"),
    ({"model": I2V, "prompt": "x", "image_url": "http://169.254.169.254/latest/meta-data"}, 400, "image_url"),
    ({"model": I2V, "prompt": "x", "image_url": GOOD, "tail_image_url": data_uri(image_bytes(100, 100))}, 400,
     "tail_image_url"),
    ({"model": T2V, "prompt": "x", "tail_image_url": GOOD}, 400, "tail_image_url"),
    ({"model": I2V, "prompt": "x", "image_url": 42}, 400, "image_url"),
    ({"model": T2V, "prompt": 'a man says "hello\u0000 there"'}, 400, "prompt"),
    ({"model": T2V, "prompt": "bell \u0007 ringing"}, 400, "prompt"),
    ({"model": T2V, "prompt": "escape \u001b[31m red"}, 400, "prompt"),
    ({"model": T2V, "prompt": "x", "negative_prompt": "blur\u0000"}, 400, "negative_prompt"),
]


@pytest.mark.parametrize(("body", "status", "field"), CASES, ids=[f"{i}-{c[2]}" for i, c in enumerate(CASES)])
def test_bad_input_names_the_field(client: httpx.Client, body: dict, status: int, field: str):
    r = client.post("/v2/video/generations", json=body)
    assert r.status_code == status, r.text
    message = r.json()["message"]
    assert message.startswith(field + ":"), message
    assert r.json()["error"]["param"] == field


def test_malformed_bodies(client: httpx.Client):
    r = client.post("/v2/video/generations", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["message"].startswith("body:")
    r = client.post("/v2/video/generations", json=[1, 2])
    assert r.status_code == 400 and r.json()["message"].startswith("body:")
    r = client.post("/v2/video/generations", content=b"x" * (33 * 1024 * 1024))
    assert r.status_code == 413 and r.json()["message"].startswith("body:")


def test_poll_without_id_or_unknown_id(client: httpx.Client):
    r = client.get("/v2/video/generations/does-not-exist")
    assert r.status_code == 404


def test_nothing_was_queued_and_server_is_healthy(live_server: LiveServer, client: httpx.Client):
    from clipforge.api.auth import owner_id
    from clipforge.jobs.sqlite import SQLiteJobStore

    store = SQLiteJobStore(live_server.home / "clipforge.db")
    assert store.list(owner_id(live_server.keys[0])) == []
    assert list((live_server.home / "media").rglob("*.*")) == []
    assert httpx.get(f"{live_server.url}/healthz").status_code == 200
    assert httpx.get(f"{live_server.url}/readyz").status_code == 200


def test_control_characters_are_named(client: httpx.Client):
    r = client.post("/v2/video/generations", json={"model": T2V, "prompt": 'he says "-f/etc/passwd\u0000"'})
    assert r.status_code == 400 and "control characters" in r.json()["message"] and "U+0000" in r.json()["message"]
    r = client.post("/v1/videos", headers={"Idempotency-Key": "ctl"}, data={"prompt": "tab\tand\x08backspace"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/v1/models", "/v2/video/generations/x", "/nope"])
@pytest.mark.parametrize("value", [b"\xff\xfe\xb2", b"caf\xc3\xa9", b"a\x7fb"])
def test_bad_request_id_header_is_replaced(live_server: LiveServer, path: str, value: bytes):
    r = httpx.get(live_server.url + path, headers={**live_server.headers(0), "X-Request-Id": value})
    assert r.status_code < 500, r.text
    assert r.headers["x-request-id"].isalnum() and len(r.headers["x-request-id"]) == 32  # a fresh one
    good = httpx.get(live_server.url + path, headers={**live_server.headers(0), "X-Request-Id": "req-1.2_3"})
    assert good.headers["x-request-id"] == "req-1.2_3"


@pytest.mark.parametrize("last_id", [b"\xb2", b"1" * 26, b"-1", b"abc", b"\xff\xfe", b"7.5"])
def test_bad_last_event_id_is_ignored(live_server: LiveServer, last_id: bytes):
    other = httpx.Client(base_url=live_server.url, headers=live_server.headers(1), timeout=30)
    gen_id = other.post("/v2/video/generations", json={"model": "test/fixed", "prompt": "sse"}).json()["id"]
    with other.stream("GET", f"/v2/video/generations/{gen_id}/events", headers={"Last-Event-ID": last_id}) as r:
        assert r.status_code == 200
        first = next(line for line in r.iter_lines() if line.startswith("data: "))
    assert '"status": "queued"' in first  # the stream started from the beginning
    other.delete(f"/v1/videos/{gen_id}")
