"""Nothing accepted is lost: a hard kill of the whole server, then a restart, completes every job."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from helpers import LiveServer, wait_terminal


def test_jobs_survive_hard_kill_and_restart(tmp_path: Path):
    server = LiveServer(tmp_path).start()
    try:
        c = httpx.Client(base_url=server.url, headers=server.headers(), timeout=30)
        ids = [c.post("/v2/video/generations", json={"model": "test/medium", "prompt": f"job {i}",
                                                      "aspect_ratio": "1:1"}).json()["id"] for i in range(4)]
        deadline = time.time() + 30
        while c.get(f"/v2/video/generations/{ids[0]}").json()["status"] != "generating":
            assert time.time() < deadline
            time.sleep(0.1)
        server.kill()  # SIGKILL to api and embedded worker, mid-job
        server.start()
        c = httpx.Client(base_url=server.url, headers=server.headers(), timeout=30)
        finals = [wait_terminal(c, i, timeout=120) for i in ids]
        assert [f["status"] for f in finals] == ["completed"] * 4, finals
        assert all(httpx.get(f["video"]["url"]).status_code == 200 for f in finals)
    finally:
        server.stop()


def test_first_request_after_start_finds_a_ready_engine(tmp_path: Path):
    """serve opens its port only once its embedded worker has registered its engines."""
    server = LiveServer(tmp_path).start(wait_ready=False)  # returns as soon as /healthz answers
    try:
        r = httpx.post(f"{server.url}/v2/video/generations", headers=server.headers(),
                       json={"model": "test/fixed", "prompt": "right away"})
        assert r.status_code == 200, r.text
    finally:
        server.stop()
