"""A fleet on one machine for tests: `clipforge serve --workers 0` apis and `clipforge worker`
processes on one PostgreSQL schema and one shared media directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from helpers import free_port

HERE = Path(__file__).parent
KEY = "fleet-key"


def models_toml(log: Path) -> str:
    return f"""
[models."fleet/count"]
task = "any"
engines = ["counting"]

[models."fleet/slow"]
task = "any"
engines = ["slowcount"]

[engines.counting]
class = "counting_engine:CountingEngine"
log = "{log}"

[engines.slowcount]
class = "counting_engine:CountingEngine"
log = "{log}"
steps = 24
step_seconds = 0.25
"""


@dataclass
class Fleet:
    root: Path
    pg_url: str | None  # None: SQLite in root (single-machine tests of worker processes)
    schema: str = field(default_factory=lambda: f"fleet_{uuid.uuid4().hex[:10]}")
    apis: list[tuple[int, subprocess.Popen]] = field(default_factory=list)
    workers: list[subprocess.Popen] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        if self.pg_url is None:
            return f"sqlite:///{self.root / 'jobs.db'}"
        sep = "&" if "?" in self.pg_url else "?"
        return f"{self.pg_url}{sep}options=-csearch_path%3D{self.schema}"

    @property
    def invocations_log(self) -> Path:
        return self.root / "invocations.jsonl"

    def env(self, name: str) -> dict[str, str]:
        config = self.root / "models.toml"
        if not config.exists():
            config.write_text(models_toml(self.invocations_log))
        keys = self.root / "keys.toml"
        if not keys.exists():  # no rate limit or active-job quota: 200 jobs are queued at once
            keys.write_text("[defaults]\nrequests_per_minute = 0\nmax_active_jobs = 0\n\n"
                            f'[keys."{KEY}"]\nname = "fleet"\n')
        home = self.root / name
        home.mkdir(parents=True, exist_ok=True)
        return {**os.environ, "CLIPFORGE_HOME": str(home), "CLIPFORGE_KEYS_FILE": str(keys),
                "CLIPFORGE_DATABASE_URL": self.database_url,
                "CLIPFORGE_STORAGE_URL": f"file://{self.root / 'media'}",
                "CLIPFORGE_MODELS_CONFIG": str(config), "CLIPFORGE_LEASE_SECONDS": "3",
                "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}

    def cli(self, *args: str, name: str = "cli") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "clipforge.cli", *args], env=self.env(name),
                              capture_output=True, text=True, timeout=60)

    def _spawn(self, name: str, *args: str, **env: str) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")
        return subprocess.Popen([sys.executable, "-m", "clipforge.cli", *args], env={**self.env(name), **env},
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def spawn_worker(self, *args: str, **env: str) -> subprocess.Popen:
        proc = self._spawn(f"worker{len(self.workers)}", "worker", *args, **env)
        self.workers.append(proc)
        return proc

    def start(self, apis: int = 2, workers: int = 3) -> Fleet:
        for _ in range(workers):
            self.spawn_worker()
        for i in range(apis):
            port = free_port()
            self.apis.append((port, self._spawn(f"api{i}", "serve", "--workers", "0", "--port", str(port))))
        deadline = time.time() + 60
        for port, proc in self.apis:
            while True:
                assert proc.poll() is None, self.logs()
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.time() < deadline, f"api on {port} not ready: {self.logs()}"
                time.sleep(0.2)
        return self

    def client(self, i: int) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.apis[i][0]}",
                            headers={"Authorization": f"Bearer {KEY}"}, timeout=60)

    def db(self):  # noqa: ANN201 - a psycopg connection in the fleet's schema
        import psycopg

        return psycopg.connect(self.database_url, autocommit=True)

    def invocations(self) -> Counter:
        if not self.invocations_log.exists():
            return Counter()
        return Counter(json.loads(line)["prompt"] for line in self.invocations_log.read_text().splitlines())

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.root.glob("*.log")))

    def stop(self) -> None:
        for proc in [p for _, p in self.apis] + self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in [p for _, p in self.apis] + self.workers:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.pg_url is None:
            return
        import psycopg

        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
