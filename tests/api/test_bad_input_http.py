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
