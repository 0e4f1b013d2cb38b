"""Status polls take a lean route (api/polls.py) ahead of FastAPI's: they answer exactly as the
documented routes do, with auth, the rate limiter and owner isolation, and leave sub-resources
(`.../events`, `.../content`) and listings to their own routes."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from clipforge.api.app import create_app
from clipforge.core.routing import parse_routing
from clipforge.core.settings import Settings
from clipforge.jobs.memory import MemoryJobStore
from clipforge.storage.local import LocalArtifactStore

ROUTING = parse_routing({"models": {"m": {"task": "any", "engines": ["fixed"]}}, "engines": {"fixed": {"steps": 1}}})


@pytest.fixture
def api(tmp_path: Path):
    keys = tmp_path / "keys.toml"
    keys.write_text('[keys."alice"]\nrequests_per_minute = 8\n\n[keys."bob"]\n')
    store = MemoryJobStore()
    store.register_worker("w", {"engines": {"fixed": {"ready": True, "reason": None}}})
    app = create_app(Settings(home=tmp_path, keys_file=keys), store=store,
                     artifacts=LocalArtifactStore(tmp_path / "media"), routing=ROUTING)
    with TestClient(app) as client:
        yield client


def test_polls_answer_as_the_documented_routes_do(api):
    alice, bob = {"Authorization": "Bearer alice"}, {"Authorization": "Bearer bob"}
    gen = api.post("/v2/video/generations", json={"model": "m", "prompt": "p"}, headers=alice).json()
    video = api.post("/v1/videos", json={"model": "m", "prompt": "p"}, headers=alice).json()

    by_query = api.get("/v2/video/generations", params={"generation_id": gen["id"]}, headers=alice)
    by_path = api.get(f"/v2/video/generations/{gen['id']}", headers=alice)
    assert by_query.status_code == by_path.status_code == 200
    assert by_query.json() == by_path.json()
    assert (by_query.json()["status"], by_query.json()["queue_position"]) == ("queued", 0)
    assert by_query.headers["retry-after"] == "2" and by_query.headers["x-request-id"]
    retrieved = api.get(f"/v1/videos/{video['id']}", headers=alice)
    assert retrieved.status_code == 200 and retrieved.json()["status"] == "queued"
    assert retrieved.headers["openai-poll-after-ms"]

    assert api.get(f"/v2/video/generations/{gen['id']}", headers=bob).status_code == 404  # not bob's
    assert api.get("/v2/video/generations", params={"generation_id": gen["id"]}).status_code == 401
    listing = api.get("/v2/video/generations", headers=alice)  # no generation_id: the listing
    assert listing.json()["object"] == "list" and len(listing.json()["data"]) == 2
    content = api.get(f"/v1/videos/{video['id']}/content", headers=alice)  # a sub-resource, not a poll
    assert content.status_code == 404 and "content is available once" in content.json()["message"]

    codes = [api.get(f"/v2/video/generations/{gen['id']}", headers=alice).status_code for _ in range(4)]
    assert codes[-1] == 429  # alice's 8 requests a minute are spent
    assert api.get(f"/v2/video/generations/{gen['id']}", headers=alice).json()["message"].startswith("rate limit")


def test_the_openapi_document_still_lists_the_poll_routes(api):
    paths = api.get("/openapi.json").json()["paths"]
    assert "get" in paths["/v2/video/generations/{generation_id}"] and "get" in paths["/v1/videos/{video_id}"]
