"""API overheads, measured side by side in one run.

1. Status-poll throughput: clipforge's `GET /v2/video/generations/{id}` (auth, store read, view) vs a
   bare FastAPI endpoint that reads one SQLite row, both under uvicorn, loaded by the same client
   (`wrk` if installed, else a Python client in a separate process; 32 connections over loopback).
2. Submit -> completed overhead: wall time from POST to a `completed` poll for a 5 s clip on
   the fixed-cost engine (1920x1080, the t2v default size), minus the time the worker's own
   engine + encode path takes for the same clip in-process: what the queue, claim, heartbeat, storage and polling add.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import LiveServer, free_port  # noqa: E402

CONNECTIONS, SECONDS = 32, 5.0


def load(url: str, headers: dict[str, str], seconds: float = SECONDS) -> float:
    """Requests per second that CONNECTIONS concurrent clients get from `url`."""

    async def run() -> int:
        done = 0
        deadline = time.perf_counter() + seconds
        limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
        async with httpx.AsyncClient(headers=headers, limits=limits, timeout=10) as client:
            async def one() -> None:
                nonlocal done
                while time.perf_counter() < deadline:
                    r = await client.get(url)
                    assert r.status_code == 200, r.text
                    done += 1

            await asyncio.gather(*(one() for _ in range(CONNECTIONS)))
        return done

    return asyncio.run(run()) / seconds


def load_in_subprocess(url: str, headers: dict[str, str]) -> float:
    """Requests per second under load from `wrk` when installed (Debian package), else from Python."""
    if shutil.which("wrk"):
        args = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{int(SECONDS)}s", "--latency"]
        for name, value in headers.items():
            args += ["-H", f"{name}: {value}"]
        out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
        assert "Non-2xx" not in out, out
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(load, (url, headers))


def bare_app(db: str, port: int) -> None:
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()
    conn = sqlite3.connect(db, check_same_thread=False)

    @app.get("/row/{row_id}")
    async def row(row_id: str) -> dict:
        r = conn.execute("SELECT id, status, progress FROM t WHERE id = ?", (row_id,)).fetchone()
        return {"id": r[0], "status": r[1], "progress": r[2]}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def poll_throughput(server: LiveServer, tmp: Path) -> None:
    c = httpx.Client(base_url=server.url, headers=server.headers(), timeout=30)
    gen = c.post("/v2/video/generations", json={"model": "test/fixed", "prompt": "bench"}).json()
    ours = load_in_subprocess(f"{server.url}/v2/video/generations/{gen['id']}", server.headers())

    db = str(tmp / "bare.db")
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, status TEXT, progress INT)")
        conn.execute("INSERT INTO t VALUES ('x', 'completed', 100)")
    port = free_port()
    proc = multiprocessing.get_context("spawn").Process(target=bare_app, args=(db, port), daemon=True)
    proc.start()
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/row/x")
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    bare = load_in_subprocess(f"http://127.0.0.1:{port}/row/x", {})
    proc.terminate()
    print(f"poll throughput: clipforge {ours:,.0f} req/s, bare FastAPI+SQLite {bare:,.0f} req/s, "
          f"ratio {ours / bare:.2f}")


def submit_overhead(server: LiveServer) -> None:
    from clipforge.core.spec import GenerationSpec
    from clipforge.engines.base import EngineRequest
    from clipforge.engines.fixed import FixedEngine
    from clipforge.worker.runner import encode_output

    c = httpx.Client(base_url=server.url, headers=server.headers(), timeout=30)
    spec = GenerationSpec(prompt="bench")
    direct, total = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            out = FixedEngine({"steps": 2}).generate(EngineRequest(spec, 1920, 1080))
            encode_output(out, Path(tmp) / "x.mp4")
        direct.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        gen = c.post("/v2/video/generations", json={"model": "bench/small", "prompt": "bench"}).json()
        while c.get(f"/v2/video/generations/{gen['id']}").json()["status"] not in ("completed", "error"):
            time.sleep(0.02)
        total.append(time.perf_counter() - t0)
    d, t = statistics.median(direct), statistics.median(total)
    print(f"submit->completed: {t:.3f} s via the service, {d:.3f} s engine+encode in-process, "
          f"overhead {t - d:.3f} s ({t / d:.2f}x)")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        from helpers import TEST_MODELS_TOML

        (home / "models.toml").write_text(TEST_MODELS_TOML + """
[models."bench/small"]
task = "any"
engines = ["small"]

[engines.small]
class = "clipforge.engines.fixed:FixedEngine"
steps = 2
""")
        keys = home / "keys.toml"
        keys.write_text("[defaults]\nrequests_per_minute = 0\n")  # measure the endpoint, not the limiter
        server = LiveServer(home, extra_env={"CLIPFORGE_KEYS_FILE": str(keys)}).start()
        try:
            poll_throughput(server, Path(tmp))
            submit_overhead(server)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
