"""The AIML dialect over real HTTP against a running `clipforge serve`."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import httpx
import numpy as np
import pytest
import requests
from PIL import Image

from clipforge.media.probe import decode_frames, probe
from helpers import LiveServer, data_uri, gradient_image, psnr, wait_terminal

I2V = "klingai/video-v2-6-pro-image-to-video"
T2V = "klingai/video-v2-6-pro-text-to-video"


def test_seed_flow_end_to_end(live_server: LiveServer, tmp_path: Path):
    """The seed's own Python example, with only the base URL, key and image changed."""
    png = gradient_image(640, 360)
    url = f"{live_server.url}/v2/video/generations"
    payload = {"model": I2V, "prompt": "A jellyfish in the ocean", "image_url": data_uri(png)}
    headers = {"Authorization": f"Bearer {live_server.keys[0]}", "Content-Type": "application/json"}
    created = requests.post(url, json=payload, headers=headers, timeout=30)
    assert created.status_code == 200, created.text
    gen = created.json()
    assert gen["status"] == "queued" and gen["model"] == I2V and isinstance(gen["created"], int)
    assert gen["id"].endswith(":" + I2V)

    # poll the way the hosted docs poll: by percent-encoded query parameter
    with httpx.Client(base_url=live_server.url, headers=headers) as c:
        first = c.get(f"/v2/video/generations?generation_id={urllib.parse.quote(gen['id'], safe='')}")
        assert first.status_code == 200
        if first.json()["status"] in ("queued", "generating"):
            assert int(first.headers["Retry-After"]) >= 1
        done = wait_terminal(c, gen["id"])
        assert done["status"] == "completed", done
        assert done["progress"] == 100 and done["error"] is None
        assert done["video"]["content_type"] == "video/mp4" and done["video"]["file_size"] > 1000
        assert done["output"]["video_url"] == done["video"]["url"] and done["output"]["has_audio"] is True
        by_path = c.get(f"/v2/video/generations/{gen['id']}").json()
        assert by_path["id"] == gen["id"] and by_path["status"] == "completed"
        video = httpx.get(done["video"]["url"])  # media URLs need no key: they are unguessable
        thumb = httpx.get(done["output"]["thumbnail_url"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    path = tmp_path / "out.mp4"
    path.write_bytes(video.content)
    info = probe(path)
    assert info.video.codec == "h264" and info.video.pix_fmt == "yuv420p"
    assert (info.video.width, info.video.height) == (640, 360)
    assert abs(info.format_duration - 5.0) <= 1 / 24 and info.video.frames == 120
    assert info.audio.codec == "aac" and info.audio.sample_rate == 48_000 and info.audio.channels == 2
    assert abs(info.audio.duration - info.video.duration) <= 1 / 24
    first_frame = decode_frames(path, [0])[0]
    assert psnr(first_frame, np.asarray(Image.open(__import__("io").BytesIO(png)).convert("RGB"))) >= 35
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"


def test_text_to_video_default_size_and_no_audio(client: httpx.Client, tmp_path: Path):
    gen = client.post("/v1/video/generations", json={"model": "test/fixed", "prompt": "waves", "duration": "10",
                                                     "aspect_ratio": "9:16", "generate_audio": False}).json()
    done = wait_terminal(client, gen["id"])
    assert done["status"] == "completed", done
    path = tmp_path / "t2v.mp4"
    path.write_bytes(httpx.get(done["video"]["url"]).content)
    info = probe(path)
    assert (info.video.width, info.video.height) == (1080, 1920)
    assert info.video.frames == 240 and info.audio is None and done["output"]["has_audio"] is False


@pytest.mark.parametrize("path", ["/video/generations", "/v2/generate/video/kling/generation"])
def test_create_aliases_and_query_polls(client: httpx.Client, path: str):
    gen = client.post(path, json={"model": "test/fixed", "prompt": "x", "aspect_ratio": "1:1"}).json()
    polled = client.get(path, params={"generation_id": gen["id"]})
    assert polled.status_code == 200 and polled.json()["id"] == gen["id"]


def test_other_keys_generations_are_404(live_server: LiveServer, client: httpx.Client):
    gen = client.post("/v2/video/generations", json={"model": "test/fixed", "prompt": "mine"}).json()
    other = httpx.Client(base_url=live_server.url, headers=live_server.headers(1))
    r = other.get("/v2/video/generations", params={"generation_id": gen["id"]})
    assert r.status_code == 404 and r.json()["statusCode"] == 404
    assert other.get(f"/v2/video/generations/{gen['id']}").status_code == 404
    assert client.get(f"/v2/video/generations/{gen['id']}").status_code == 200


def test_auth_required(live_server: LiveServer):
    r = httpx.post(f"{live_server.url}/v2/video/generations", json={"model": T2V, "prompt": "x"})
    assert r.status_code == 401 and "API key" in r.json()["message"]
    r = httpx.get(f"{live_server.url}/v1/models", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["message"] == "invalid API key"
    assert httpx.get(f"{live_server.url}/healthz").json() == {"status": "ok"}


def test_models_lists_readiness(client: httpx.Client):
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert models[I2V]["ready"] and models[I2V]["engine"] == "preview"
    unready = models["test/unready"]
    assert unready["ready"] is False and unready["engines"][0]["name"] == "ltx2"
    assert unready["engines"][0]["reason"]
    r = client.post("/v2/video/generations", json={"model": "test/unready", "prompt": "x"})
    assert r.status_code == 503 and "ltx2" in r.json()["message"] and r.headers["Retry-After"]


def test_unknown_fields_are_ignored(client: httpx.Client):
    r = client.post("/v2/video/generations", json={"model": "test/fixed", "prompt": "x", "style": "noir",
                                                   "provider": "auto"})
    assert r.status_code == 200


def test_error_envelope_shape(client: httpx.Client):
    r = client.post("/v2/video/generations", json={"model": "test/fixed", "prompt": "x", "duration": 7})
    body = r.json()
    assert r.status_code == 400
    assert set(body) >= {"statusCode", "message", "path", "requestId", "timestamp", "detail"}
    assert body["path"] == "/v2/video/generations" and body["requestId"] == r.headers["x-request-id"]
    assert body["detail"][0]["loc"] == ["body", "duration"]
    assert client.get("/nope").status_code == 404
