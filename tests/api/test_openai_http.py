"""The OpenAI dialect over raw HTTP: JSON bodies, refusals, one job store shared with the AIML dialect."""

from __future__ import annotations

import time

import httpx
import pytest

from helpers import LiveServer, data_uri, gradient_image, wait_terminal


def wait_video(client: httpx.Client, video_id: str, timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        body = client.get(f"/v1/videos/{video_id}").json()
        if body["status"] in ("completed", "failed"):
            return body
        time.sleep(0.1)
    raise TimeoutError(body)


def test_json_create_with_image_url_object_and_string(client: httpx.Client):
    png = gradient_image(400, 400)
    for ref in ({"image_url": data_uri(png)}, data_uri(png)):
        r = client.post("/v1/videos", json={"prompt": "x", "model": "test/fixed", "input_reference": ref,
                                            "seconds": 5})
        assert r.status_code == 200, r.text
        assert r.json()["size"] == "400x400" and r.json()["seconds"] == "5"
        assert wait_video(client, r.json()["id"])["status"] == "completed"


def test_multipart_nested_image_url(client: httpx.Client):
    r = client.post("/v1/videos", data={"prompt": "x", "model": "test/fixed", "size": "720x1280",
                                        "input_reference[image_url]": data_uri(gradient_image(320, 480))})
    assert r.status_code == 200, r.text
    assert r.json()["size"] == "720x1280"


def test_defaults_model_seconds_and_size(client: httpx.Client):
    r = client.post("/v1/videos", data={"prompt": "no model given"})
    assert r.status_code == 200, r.text
    assert (r.json()["model"], r.json()["seconds"], r.json()["size"]) == ("sora-2", "5", "1920x1080")
    client.delete(f"/v1/videos/{r.json()['id']}")


@pytest.mark.parametrize("fields, param, words", [
    ({"seconds": "6"}, "seconds", '"4", "5", "8", "10" or "12"'),
    ({"seconds": "4.5"}, "seconds", "got '4.5'"),
    ({"seconds": "16"}, "seconds", '"4", "5", "8", "10" or "12"'),
    ({"seconds": "five"}, "seconds", "got 'five'"),
    ({"size": "1280*720"}, "size", "WIDTHxHEIGHT"),
    ({"size": "1281x720"}, "size", "even"),
    ({"size": "200x200"}, "size", "between 256 and 1920"),
    ({"size": "2048x1152"}, "size", "between 256 and 1920"),
    ({"size": "1920x256"}, "size", "aspect ratio"),
    ({"prompt": ""}, "prompt", "must not be empty"),
    ({"input_reference": "not an image"}, "input_reference", "input_reference"),
])
def test_refusals_name_the_field(client: httpx.Client, fields: dict, param: str, words: str):
    r = client.post("/v1/videos", data={"prompt": "x", "model": "test/fixed", **fields})
    body = r.json()
    assert r.status_code == 400, body
    assert body["error"]["param"] == param and words in body["error"]["message"]
    assert body["error"]["message"].startswith(param)


def test_refusals_of_other_shapes(client: httpx.Client):
    r = client.post("/v1/videos", json={"prompt": "x", "input_reference": {"file_id": "file_123"}})
    assert r.status_code == 400 and "file ids are not supported" in r.json()["message"]
    r = client.post("/v1/videos", content=b"[1]", headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = client.post("/v1/videos", files={"input_reference": ("a.txt", b"hello", "text/plain")},
                    data={"prompt": "x", "model": "test/fixed"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input_reference"
    assert client.get("/v1/videos", params={"order": "sideways"}).status_code == 400
    assert client.get("/v1/videos", params={"limit": 0}).status_code == 400


def test_content_before_completion_is_404_with_reason(client: httpx.Client):
    video = client.post("/v1/videos", data={"prompt": "slow", "model": "test/slow", "size": "512x288"}).json()
    r = client.get(f"/v1/videos/{video['id']}/content")
    assert r.status_code == 404 and "once the status is completed" in r.json()["message"]
    r = client.get(f"/v1/videos/{video['id']}/content", params={"variant": "poster"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "variant"
    client.delete(f"/v1/videos/{video['id']}")


def test_delete_running_video_cancels_and_removes_inputs(live_server: LiveServer, client: httpx.Client):
    inputs = live_server.home / "media" / "inputs"
    before = set(inputs.rglob("*.png"))
    files = {"input_reference": ("a.png", gradient_image(), "image/png")}
    video = client.post("/v1/videos", data={"prompt": "slow", "model": "test/slow"}, files=files).json()
    assert len(set(inputs.rglob("*.png")) - before) == 1
    deadline = time.time() + 30
    while client.get(f"/v1/videos/{video['id']}").json()["status"] != "in_progress":
        assert time.time() < deadline
        time.sleep(0.1)
    r = client.delete(f"/v1/videos/{video['id']}")
    assert r.json() == {"id": video["id"], "object": "video.deleted", "deleted": True}
    assert set(inputs.rglob("*.png")) == before
    assert client.get(f"/v1/videos/{video['id']}").status_code == 404
    assert client.get("/v2/video/generations", params={"generation_id": video["id"]}).status_code == 404


def test_one_job_store_for_both_dialects(client: httpx.Client):
    aiml = client.post("/v2/video/generations", json={"model": "test/fixed", "prompt": "from aiml",
                                                      "aspect_ratio": "1:1", "duration": 10}).json()
    video = wait_video(client, aiml["id"])
    assert (video["status"], video["prompt"], video["seconds"], video["size"]) == ("completed", "from aiml", "10",
                                                                                    "1080x1080")
    assert client.get(f"/v1/videos/{aiml['id']}/content", params={"variant": "thumbnail"}).content[:2] == b"\xff\xd8"

    made = client.post("/v1/videos", data={"prompt": "from openai", "model": "test/fixed", "size": "512x288"}).json()
    done = wait_terminal(client, made["id"])
    assert done["status"] == "completed" and (done["output"]["width"], done["output"]["height"]) == (512, 288)
    listed = {g["id"] for g in client.get("/v1/videos", params={"limit": 100}).json()["data"]}
    assert {aiml["id"], made["id"]} <= listed


def test_cancelled_maps_to_failed_with_code(client: httpx.Client):
    video = client.post("/v1/videos", data={"prompt": "slow", "model": "test/slow", "size": "512x288"}).json()
    client.post(f"/v2/video/generations/{video['id']}/cancel")
    done = wait_video(client, video["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "cancelled"


def test_other_keys_videos_are_404(live_server: LiveServer, client: httpx.Client):
    video = client.post("/v1/videos", data={"prompt": "mine", "model": "test/fixed", "size": "512x288"}).json()
    other = httpx.Client(base_url=live_server.url, headers=live_server.headers(1))
    for method, path in (("GET", ""), ("DELETE", ""), ("GET", "/content"), ("POST", "/remix")):
        r = other.request(method, f"/v1/videos/{video['id']}{path}", json={"prompt": "x"})
        assert r.status_code == 404, (method, path, r.text)
    assert client.get(f"/v1/videos/{video['id']}").status_code == 200
