"""API overheads, measured side by side in one run.

1. Status-poll throughput: clipforge's `GET /v2/video/generations/{id}` (auth, rate limiter, store read,
   view) through the default `clipforge serve` vs a bare async FastAPI endpoint that reads one SQLite
   row, both under the same uvicorn (uvloop + httptools when installed: uvicorn[standard]), loaded by
   the same client (`wrk` if installed, else a Python client in a separate process; 32 connections
   over loopback). Both servers run at once and are loaded in alternating short rounds, so a shared,
   busy machine slows both alike; the ratio is the median of the rounds' ratios. `--polls` runs only this.
2. Submit -> completed overhead: wall time from POST to a `completed` poll for a 5 s clip on
   the fixed-cost engine (1920x1080, the t2v default size), minus the time the worker's own
   engine + encode path takes for the same clip in-process: what the queue, claim, heartbeat, storage and polling add.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
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

CONNECTIONS, SECONDS, ROUNDS = 32, 2.0, 5


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


def load_in_subprocess(url: str, headers: dict[str, str], seconds: float = SECONDS) -> float:
    """Requests per second under load from `wrk` when installed (Debian package), else from Python."""
    if shutil.which("wrk"):
        args = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency"]
        for name, value in headers.items():
            args += ["-H", f"{name}: {value}"]
        out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
        assert "Non-2xx" not in out, out
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(load, (url, headers, seconds))


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(url: str, headers: dict[str, str], pid: int) -> tuple[float, float | None]:
    """(requests per second, server CPU microseconds per request) for one round of load."""
    before = cpu_seconds(pid)
    rate = load_in_subprocess(url, headers)
    after = cpu_seconds(pid)
    cpu = (after - before) / (rate * SECONDS) * 1e6 if before is not None and after is not None else None
    return rate, cpu


def bare_app(db: str, port: int) -> None:
    os.setsid()  # a session of its own, like `clipforge serve` under LiveServer (Linux schedules sessions as groups)
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
    while c.get(f"/v2/video/generations/{gen['id']}").json()["status"] != "completed":  # the worker is idle again
        time.sleep(0.1)
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
    # The poll as the AIML contract and the SDK send it.
    ours_url = f"{server.url}/v2/video/generations?generation_id={gen['id']}"
    bare_url = f"http://127.0.0.1:{port}/row/x"
    load_in_subprocess(ours_url, server.headers(), 1)  # warm both up
    load_in_subprocess(bare_url, {}, 1)
    assert server.proc is not None and proc.pid is not None
    rounds = [(measure(ours_url, server.headers(), server.proc.pid), measure(bare_url, {}, proc.pid))
              for _ in range(ROUNDS)]
    proc.terminate()
    report(rounds)


def report(rounds: list[tuple[tuple[float, float | None], tuple[float, float | None]]]) -> None:
    ours, bare = statistics.median(o[0] for o, _ in rounds), statistics.median(b[0] for _, b in rounds)
    ratios = sorted(o[0] / b[0] for o, b in rounds)
    print(f"poll throughput: clipforge {ours:,.0f} req/s, bare FastAPI+SQLite {bare:,.0f} req/s (medians of "
          f"{ROUNDS} alternating {SECONDS:g} s rounds), ratio {statistics.median(ratios):.2f} "
          f"(rounds {ratios[0]:.2f}-{ratios[-1]:.2f})")
    if all(o[1] and b[1] for o, b in rounds):  # server CPU per request: steadier on a shared machine
        ours_cpu, bare_cpu = statistics.median(o[1] for o, _ in rounds), statistics.median(b[1] for _, b in rounds)
        print(f"server CPU per poll: clipforge {ours_cpu:,.0f} us, bare {bare_cpu:,.0f} us, "
              f"ratio {bare_cpu / ours_cpu:.2f}")


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
        keys.write_text("[defaults]\nrequests_per_minute = 1000000000\n")  # the limiter runs, never refuses
        server = LiveServer(home, extra_env={"CLIPFORGE_KEYS_FILE": str(keys)}).start()
        try:
            poll_throughput(server, Path(tmp))
            if "--polls" not in sys.argv:
                submit_overhead(server)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
