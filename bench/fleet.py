"""Fleet scaling: jobs per second with 1, 2 and 4 `clipforge worker` processes on one PostgreSQL.

Each job costs a fixed, sleep-based engine time (default 5 steps x 0.1 s) and makes a tiny clip
(4 frames of 64x64, no audio), so the run measures the queue (claim with SKIP LOCKED, LISTEN/NOTIFY
wake-ups, heartbeats, finish) and the worker's fixed per-job work, not the CPU of an engine. Jobs
are inserted straight into the store (the api is not what is measured) after the workers have
registered; the clock runs from the first insert to the last `completed` row.

    .venv/bin/python bench/fleet.py [--workers 1,2,4] [--jobs-per-worker 12] [--steps 5] [--step-seconds 0.1]

PostgreSQL: CLIPFORGE_BENCH_DATABASE_URL, else 127.0.0.1:5432 database `test` as root or postgres.
Each run uses a fresh schema, dropped at the end. Prints jobs/s and the ratio to one worker.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from clipforge.engines.base import Engine, EngineOutput, EngineRequest, StepCallback, no_progress

HERE = Path(__file__).resolve().parent


class SleepEngine(Engine):
    """Fixed cost per job: `steps` sleeps of `step_seconds`; a 4-frame 64x64 clip, no audio."""

    name = "sleep"

    def generate(self, request: EngineRequest, on_step: StepCallback = no_progress) -> EngineOutput:
        steps = int(self.config.get("steps", 5))
        for i in range(steps):
            time.sleep(float(self.config.get("step_seconds", 0.1)))
            on_step(i + 1, steps, "denoising")
        return EngineOutput(self._frames(), 4, 64, 64, 24, None, 48_000)

    @staticmethod
    def _frames() -> Iterator[np.ndarray]:
        for i in range(4):
            frame = np.full((64, 64, 3), 90, np.uint8)
            frame[:, i * 16:i * 16 + 16] = 255
            yield frame


def find_postgres() -> str:
    import psycopg

    candidates = [os.environ.get("CLIPFORGE_BENCH_DATABASE_URL", "")] + [
        f"postgresql://{u}@127.0.0.1:5432/test" for u in ("root", "postgres")]
    for url in filter(None, candidates):
        try:
            with psycopg.connect(url, connect_timeout=2):
                return url
        except psycopg.Error:
            continue
    sys.exit("PostgreSQL unreachable: set CLIPFORGE_BENCH_DATABASE_URL")


def run(pg_url: str, workers: int, jobs: int, steps: int, step_seconds: float, root: Path) -> float:
    """Seconds for `workers` worker processes to complete `jobs` jobs."""
    import psycopg

    from clipforge.core.job import Job, new_job_id
    from clipforge.core.spec import GenerationSpec
    from clipforge.jobs.postgres import PostgresJobStore

    schema = f"bench_fleet_{uuid.uuid4().hex[:8]}"
    db_url = f"{pg_url}{'&' if '?' in pg_url else '?'}options=-csearch_path%3D{schema}"
    config = root / "models.toml"
    config.write_text(f'[models."bench/sleep"]\ntask = "any"\nengines = ["sleep"]\n\n[engines.sleep]\n'
                      f'class = "fleet:SleepEngine"\nsteps = {steps}\nstep_seconds = {step_seconds}\n')
    env = {**os.environ, "CLIPFORGE_DATABASE_URL": db_url, "CLIPFORGE_MODELS_CONFIG": str(config),
           "CLIPFORGE_STORAGE_URL": f"file://{root / 'media'}", "CLIPFORGE_HOME": str(root / "home"),
           "CLIPFORGE_API_KEYS": "bench", "PYTHONPATH": str(HERE)}
    store = PostgresJobStore(db_url)
    procs = []
    try:
        for i in range(workers):
            log = open(root / f"worker-{workers}-{i}.log", "ab")
            procs.append(subprocess.Popen([sys.executable, "-m", "clipforge.cli", "worker"], env=env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.time() + 60
        while len(store.live_workers(30)) < workers:
            if time.time() > deadline or any(p.poll() is not None for p in procs):
                sys.exit(f"workers did not start; see {root}/worker-*.log")
            time.sleep(0.1)
        spec = GenerationSpec(prompt="bench", size=(64, 64)).to_dict()
        started = time.perf_counter()
        for _ in range(jobs):
            store.create(Job(id=new_job_id("bench/sleep"), owner="bench", model="bench/sleep", engine="sleep",
                             params={"spec": spec}))
        with psycopg.connect(db_url, autocommit=True) as conn:
            while conn.execute("SELECT count(*) FROM jobs WHERE status = 'completed'").fetchone()[0] < jobs:
                time.sleep(0.02)
                if time.perf_counter() - started > 600:
                    sys.exit("jobs did not complete in 10 minutes")
        elapsed = time.perf_counter() - started
        with psycopg.connect(db_url, autocommit=True) as conn:
            attempts = conn.execute("SELECT max(attempts) FROM jobs").fetchone()[0]
            used = conn.execute("SELECT count(DISTINCT worker_id) FROM jobs").fetchone()[0]
        assert attempts == 1 and used == workers, (attempts, used)
        return elapsed
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait(timeout=60)
        store.close()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--jobs-per-worker", type=int, default=12)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--step-seconds", type=float, default=0.1)
    args = parser.parse_args()
    pg_url = find_postgres()
    counts = [int(n) for n in args.workers.split(",")]
    cost = args.steps * args.step_seconds
    print(f"engine cost {cost:.2f} s/job (sleep), {os.cpu_count()} CPUs, PostgreSQL {pg_url.split('@')[-1]}")
    print(f"{'workers':>7} {'jobs':>5} {'seconds':>8} {'jobs/s':>7} {'ideal':>6} {'vs 1':>6} {'overhead/job':>13}")
    base = None
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        for n in counts:
            jobs = args.jobs_per_worker * n
            elapsed = run(pg_url, n, jobs, args.steps, args.step_seconds, Path(tmp))
            rate = jobs / elapsed
            if base is None:
                base = rate / n  # one worker's rate (the first run's, per worker, when it is not 1)
            overhead_ms = 1000 * (elapsed * n / jobs - cost)  # wall time per job per worker beyond the engine
            print(f"{n:>7} {jobs:>5} {elapsed:>8.2f} {rate:>7.2f} {n / cost:>6.2f} {rate / base:>5.2f}x "
                  f"{overhead_ms:>10.0f} ms")


if __name__ == "__main__":
    main()
