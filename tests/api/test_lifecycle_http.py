"""Job lifecycle over real HTTP: listing, cancel, server-sent events."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from helpers import LiveServer, wait_terminal


def create(c: httpx.Client, model: str = "test/fixed", **extra) -> str:
    r = c.post("/v2/video/generations", json={"model": model, "prompt": "lifecycle", "aspect_ratio": "1:1",
                                               **extra})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def wait_status(c: httpx.Client, gen_id: str, status: str, timeout: float = 30) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        body = c.get(f"/v2/video/generations/{gen_id}").json()
        if body["status"] == status:
            return body
        time.sleep(0.05)
    raise TimeoutError(f"{gen_id} never reached {status}: {body}")


def read_sse(c: httpx.Client, gen_id: str, last_id: str | None = None, max_events: int | None = None) -> list:
    headers = {"Last-Event-ID": last_id} if last_id else {}
    events, current = [], {}
    with c.stream("GET", f"/v2/video/generations/{gen_id}/events", headers=headers, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("id: "):
                current["id"] = line[4:]
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif line == "" and "data" in current:
                events.append(current)
                current = {}
                if max_events and len(events) >= max_events:
                    break
    return events


def test_cancel_queued_and_running(client: httpx.Client):
    running = create(client, "test/slow")
    queued = create(client, "test/slow")
    wait_status(client, running, "generating")
    r = client.delete(f"/v2/video/generations/{queued}")
    assert r.status_code == 200 and r.json()["status"] == "error"
    assert r.json()["error"]["name"] == "Cancelled"
    deadline = time.time() + 10
    while client.get(f"/v2/video/generations/{running}").json()["progress"] < 5:
        assert time.time() < deadline
        time.sleep(0.05)
    asked = time.time()
    r = client.post(f"/v2/video/generations/{running}/cancel")
    assert r.status_code == 200 and r.json()["cancel_requested"] is True
    final = wait_terminal(client, running, timeout=10)
    took = time.time() - asked
    assert final["status"] == "error" and final["error"]["name"] == "Cancelled", final
    assert took < 2.0, f"cancel took {took:.2f}s; one step is 0.25 s"
    assert final["progress"] < 95 and final["video"] is None
    again = client.delete(f"/v2/video/generations/{running}")
    assert again.status_code == 409 and "already finished" in again.json()["message"]


def test_listing_newest_first_paginated_filtered(live_server: LiveServer):
    c = httpx.Client(base_url=live_server.url, headers=live_server.headers(1), timeout=30)
    ids = [create(c) for _ in range(3)]
    for gen_id in ids:
        wait_terminal(c, gen_id)
    page1 = c.get("/v2/video/generations", params={"limit": 2}).json()
    assert [g["id"] for g in page1["data"]] == ids[::-1][:2] and page1["has_more"] is True
    page2 = c.get("/v2/video/generations", params={"limit": 2, "after": page1["next_cursor"]}).json()
    assert [g["id"] for g in page2["data"]] == [ids[0]] and page2["has_more"] is False
    done = c.get("/v2/video/generations", params={"status": "completed"}).json()["data"]
    assert {g["id"] for g in done} == set(ids)
    assert c.get("/v2/video/generations", params={"status": "queued"}).json()["data"] == []
    bad = c.get("/v2/video/generations", params={"status": "weird"})
    assert bad.status_code == 400 and bad.json()["message"].startswith("status:")


def test_sse_to_the_end_and_resume(client: httpx.Client):
    gen_id = create(client, "test/medium")
    events = read_sse(client, gen_id)
    assert events[-1]["event"] == "done" and events[-1]["data"]["status"] == "completed"
    assert events[-1]["data"]["video"]["url"]
    progresses = [e["data"]["progress"] for e in events if e["event"] == "progress"]
    assert progresses == sorted(progresses) and len(set(progresses)) >= 3
    seqs = [int(e["id"]) for e in events]
    assert seqs == sorted(seqs)
    # reconnect from the middle: exactly the rest, nothing missed
    middle = events[len(events) // 2]["id"]
    rest = read_sse(client, gen_id, last_id=middle)
    assert [e["id"] for e in rest] == [e["id"] for e in events if int(e["id"]) > int(middle)]


@pytest.mark.parametrize("path", ["/v2/video/generations/nope/events", "/v2/video/generations/nope/cancel"])
def test_unknown_ids(client: httpx.Client, path: str):
    r = client.get(path) if path.endswith("events") else client.post(path)
    assert r.status_code == 404
