"""Per-key rate limits and active-job quotas over real HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx

from helpers import LiveServer, wait_terminal

KEYS_TOML = """
[defaults]
requests_per_minute = 1000
max_active_jobs = 10

[keys."chatty-key"]
requests_per_minute = 5

[keys."busy-key"]
max_active_jobs = 1
"""


def test_rate_limit_and_quota(tmp_path: Path):
    keys = tmp_path / "keys.toml"
    keys.write_text(KEYS_TOML)
    server = LiveServer(tmp_path / "home", keys=("chatty-key", "busy-key", "calm-key"),
                        extra_env={"CLIPFORGE_KEYS_FILE": str(keys), "CLIPFORGE_API_KEYS": "calm-key"}).start()
    try:
        chatty = httpx.Client(base_url=server.url, headers=server.headers(0))
        codes = [chatty.get("/v1/models").status_code for _ in range(6)]
        assert codes == [200] * 5 + [429]
        r = chatty.get("/v1/models")
        assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 60
        assert "5 requests per minute" in r.json()["message"]
        # other keys are unaffected
        calm = httpx.Client(base_url=server.url, headers=server.headers(2))
        assert calm.get("/v1/models").status_code == 200

        busy = httpx.Client(base_url=server.url, headers=server.headers(1))
        first = busy.post("/v2/video/generations", json={"model": "test/slow", "prompt": "one"})
        assert first.status_code == 200
        second = busy.post("/v2/video/generations", json={"model": "test/slow", "prompt": "two"})
        assert second.status_code == 429 and "1 generations queued or running" in second.json()["message"]
        assert second.headers["Retry-After"]
        busy.delete(f"/v2/video/generations/{first.json()['id']}")
        wait_terminal(busy, first.json()["id"], timeout=10)
        third = busy.post("/v2/video/generations", json={"model": "test/fixed", "prompt": "three"})
        assert third.status_code == 200
    finally:
        server.stop()
