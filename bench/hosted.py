"""Hosted engines at scale: jobs/s and worker RSS with 1, 16 and 64 concurrent jobs in ONE worker process.

A local upstream speaks the AI/ML API contract (create, poll, media) and takes a fixed time per job
(default 2 s), then serves a small pre-encoded MP4. One `clipforge worker --engines aiml --concurrency N`
process (SQLite store in a temporary home) runs the jobs; jobs are inserted straight into the store after
the worker registered, and the clock runs from the first insert to the last `completed` row. The worker's
resident memory is sampled from /proc while it runs (peak reported). Each job still downloads, decodes and
stores its clip with a thumbnail and a spritesheet, so the numbers include the re-hosting work.

    .venv/bin/python bench/hosted.py [--concurrency 1,16,64] [--jobs-per-slot 2] [--job-seconds 2]

The ideal is N / job_seconds jobs/s at concurrency N; RSS should grow far slower than N x one worker.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np

from clipforge.core.job import Job, JobStatus
from clipforge.core.spec import GenerationSpec
from clipforge.jobs.base import open_store
from clipforge.media.encode import encode_mp4

MODEL = "bench/hosted"


def small_clip() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        frames = (np.full((180, 320, 3), 8 * i, np.uint8) for i in range(24))
        encode_mp4(path, frames, num_frames=24, width=320, height=180, fps=24, audio=None)
        return path.read_bytes()


class Upstream(ThreadingHTTPServer):
    """The AI/ML API contract, a fixed `job_seconds` per generation."""

    daemon_threads = True

    def __init__(self, job_seconds: float) -> None:
        super().__init__(("127.0.0.1", 0), UpstreamHandler)
        self.job_seconds, self.clip, self.started = job_seconds, small_clip(), {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class UpstreamHandler(BaseHTTPRequestHandler):
    server: Upstream

    def log_message(self, *args: object) -> None:
        pass

    def reply(self, body: dict | bytes, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("content-length", 0)))
        gen_id = uuid.uuid4().hex
        self.server.started[gen_id] = time.monotonic()
        self.reply({"id": gen_id, "status": "queued"})

    def do_GET(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        if url.path.startswith("/media/"):
            return self.reply(self.server.clip, "video/mp4")
        if url.path == "/v1/models":
            return self.reply({"data": []})
        gen_id = parse_qs(url.query)["generation_id"][0]
        elapsed = time.monotonic() - self.server.started[gen_id]
        if elapsed < self.server.job_seconds:
            return self.reply({"id": gen_id, "status": "generating",
                               "progress": int(100 * elapsed / self.server.job_seconds)})
        self.reply({"id": gen_id, "status": "completed", "video": {"url": f"{self.server.url}/media/{gen_id}.mp4"},
                    "meta": {"usage": {"credits_used": 1}}})


def models_toml(upstream: str) -> str:
    return (f'[models."{MODEL}"]\nengines = ["aiml"]\n\n[engines.aiml]\nbase_url = "{upstream}"\n'
            'api_key_env = "BENCH_UPSTREAM_KEY"\npoll_seconds = 0.25\nmax_poll_seconds = 0.5\n')


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start_worker(home: Path, upstream: str, concurrency: int) -> subprocess.Popen:
    (home / "models.toml").write_text(models_toml(upstream))
    env = {**os.environ, "CLIPFORGE_HOME": str(home), "CLIPFORGE_MODELS_CONFIG": str(home / "models.toml"),
           "BENCH_UPSTREAM_KEY": "bench-key", "CLIPFORGE_LOG_FORMAT": "text"}
    return subprocess.Popen([sys.executable, "-m", "clipforge.cli", "worker", "--engines", "aiml",
                             "--concurrency", str(concurrency)], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(home / "worker.log", "wb"), start_new_session=True)


def wait_registered(store, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not any(w["info"]["engines"].get("aiml", {}).get("ready") for w in store.live_workers(30)):
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not register a ready aiml engine")
        time.sleep(0.1)


def run_level(concurrency: int, jobs: int, upstream: Upstream) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-hosted-") as tmp:
        home = Path(tmp)
        store = open_store(f"sqlite:///{home / 'clipforge.db'}")
        proc = start_worker(home, upstream.url, concurrency)
        peak, stop = [rss_kib(proc.pid)], threading.Event()

        def sample() -> None:
            while not stop.wait(0.1):
                peak.append(rss_kib(proc.pid))

        try:
            wait_registered(store)
            idle = rss_kib(proc.pid)
            threading.Thread(target=sample, daemon=True).start()
            started = time.monotonic()
            ids = [store.create(Job(id=f"{uuid.uuid4()}:{MODEL}", owner="bench", model=MODEL, engine="aiml",
                                    params={"spec": GenerationSpec(prompt=f"job {i}").to_dict()}))[0].id
                   for i in range(jobs)]
            while True:
                states = [store.get(i).status for i in ids]
                if all(s.terminal for s in states):
                    break
                time.sleep(0.05)
            elapsed = time.monotonic() - started
            failed = sum(s != JobStatus.COMPLETED for s in states)
        finally:
            stop.set()
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
            store.close()
    return {"concurrency": concurrency, "jobs": jobs, "failed": failed, "seconds": round(elapsed, 2),
            "jobs_per_s": round(jobs / elapsed, 2), "ideal_jobs_per_s": round(concurrency / upstream.job_seconds, 2),
            "rss_idle_mib": round(idle / 1024, 1), "rss_peak_mib": round(max(peak) / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--jobs-per-slot", type=int, default=2)
    parser.add_argument("--job-seconds", type=float, default=2.0)
    args = parser.parse_args()
    upstream = Upstream(args.job_seconds)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    results = []
    for n in (int(x) for x in args.concurrency.split(",")):
        result = run_level(n, max(4, n * args.jobs_per_slot), upstream)
        results.append(result)
        print(json.dumps(result), flush=True)
    base = results[0]
    for r in results[1:]:
        print(f"concurrency {r['concurrency']}: {r['jobs_per_s'] / base['jobs_per_s']:.1f}x the jobs/s of "
              f"concurrency {base['concurrency']}, peak RSS {r['rss_peak_mib']} MiB vs "
              f"{r['concurrency']} x {base['rss_peak_mib']} MiB = {r['concurrency'] * base['rss_peak_mib']:.0f} MiB "
              "for one process per job")
    upstream.shutdown()


if __name__ == "__main__":
    main()
