"""SIGTERM to `clipforge serve` (what docker and Kubernetes send to the main process) stops it the way
SIGTERM to `clipforge worker` does: its embedded worker finishes the running job within the grace
period, or hands it back to the queue without counting an attempt, and a restarted server completes it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from clipforge.jobs.base import open_store
from helpers import LiveServer, wait_terminal


def start_job(server: LiveServer) -> str:
    with httpx.Client(base_url=server.url, headers=server.headers(), timeout=30) as c:
        r = c.post("/v2/video/generations", json={"model": "test/slow", "prompt": "sigterm", "aspect_ratio": "1:1"})
        assert r.status_code == 200, r.text
        job_id = r.json()["id"]
        deadline = time.time() + 30
        while (body := c.get(f"/v2/video/generations/{job_id}").json())["progress"] < 5:
            assert time.time() < deadline, body
            time.sleep(0.1)
    return job_id


def sigterm_main_process(server: LiveServer, timeout: float) -> float:
    """SIGTERM to the serve process alone (not its group); seconds until it exited."""
    assert server.proc is not None
    started = time.monotonic()
    os.kill(server.proc.pid, signal.SIGTERM)
    assert server.proc.wait(timeout=timeout) == 0, server.log()[-3000:]
    server.proc = None
    return time.monotonic() - started


def test_sigterm_past_the_grace_period_hands_the_job_back_and_a_restart_completes_it(tmp_path: Path):
    home = tmp_path / "home"
    server = LiveServer(home, extra_env={"CLIPFORGE_SHUTDOWN_GRACE_SECONDS": "0.5"}).start()
    try:
        job_id = start_job(server)
        took = sigterm_main_process(server, timeout=30)
        assert took < 8, server.log()[-3000:]  # the 10 s job did not run to its end
        store = open_store(f"sqlite:///{home / 'clipforge.db'}")
        back = store.get(job_id)
        assert (back.status.value, back.attempts, back.worker_id) == ("queued", 0, None), server.log()[-3000:]
        assert store.live_workers(60) == []  # the embedded worker removed its row on the way out
        store.close()
        assert "handed back to the queue" in server.log()

        server.start()  # same home: the restarted server's worker takes the job at once
        with httpx.Client(base_url=server.url, headers=server.headers(), timeout=30) as c:
            done = wait_terminal(c, job_id, timeout=60)
        assert done["status"] == "completed", done
        store = open_store(f"sqlite:///{home / 'clipforge.db'}")
        assert store.get(job_id).attempts == 1
        store.close()
    finally:
        server.stop()


def test_sigterm_within_the_grace_period_lets_the_job_finish(tmp_path: Path):
    home = tmp_path / "home"
    server = LiveServer(home, extra_env={"CLIPFORGE_SHUTDOWN_GRACE_SECONDS": "60"}).start()
    try:
        job_id = start_job(server)
        sigterm_main_process(server, timeout=60)
        store = open_store(f"sqlite:///{home / 'clipforge.db'}")
        done = store.get(job_id)
        assert (done.status.value, done.attempts, done.progress) == ("completed", 1, 100), server.log()[-3000:]
        store.close()
    finally:
        server.stop()
