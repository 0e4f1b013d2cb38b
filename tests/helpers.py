"""Shared test helpers: images, a live `clipforge serve` process, polling."""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import httpx
import numpy as np
from PIL import Image

TEST_MODELS_TOML = """
[models."klingai/video-v2-6-pro-image-to-video"]
task = "i2v"
engines = ["preview"]

[models."klingai/video-v2-6-pro-text-to-video"]
task = "t2v"
engines = ["preview"]

[models."test/fixed"]
task = "any"
engines = ["fixed"]

[models."test/slow"]
task = "any"
engines = ["slow"]

[models."test/medium"]
task = "any"
engines = ["medium"]

[models."sora-2"]
task = "any"
engines = ["fixed"]

[models."test/fail"]
task = "any"
engines = ["failing"]

[models."test/unready"]
task = "any"
engines = ["ltx2"]

[engines.fixed]
steps = 2

[engines.slow]
class = "clipforge.engines.fixed:FixedEngine"
steps = 40
step_seconds = 0.25

[engines.medium]
class = "clipforge.engines.fixed:FixedEngine"
steps = 8
step_seconds = 0.25

[engines.failing]
class = "clipforge.engines.fixed:FixedEngine"
steps = 1
fail = "the test engine always fails"

[engines.ltx2]
path = "/nonexistent/ltx2-weights"
"""


PG_CANDIDATES = [os.environ.get("CLIPFORGE_TEST_DATABASE_URL", "")] + [
    f"postgresql://{user}@127.0.0.1:5432/test" for user in ("root", "postgres")]


def find_postgres() -> tuple[str | None, str]:
    """A reachable PostgreSQL test database URL, or None and the reason (for a visible skip)."""
    try:
        import psycopg
    except ImportError as exc:
        return None, f"psycopg is not installed ({exc})"
    errors = []
    for url in filter(None, PG_CANDIDATES):
        try:
            with psycopg.connect(url, connect_timeout=2):
                return url, ""
        except psycopg.Error as exc:
            errors.append(f"{url}: {str(exc).strip().splitlines()[0]}")
    return None, "PostgreSQL unreachable: " + "; ".join(errors)


def gradient_image(width: int = 480, height: int = 320, fmt: str = "PNG", seed: int = 0) -> bytes:
    """A colourful, structured test picture (not flat, so PSNR and motion checks mean something)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 128 + 100 * np.sin(x / 37.0 + seed)
    g = 128 + 100 * np.cos(y / 23.0)
    b = 128 + 100 * np.sin((x + y) / 51.0)
    img = np.stack([r, g, b], -1)
    for _ in range(6):
        cx, cy, rad = rng.integers(0, width), rng.integers(0, height), rng.integers(20, 60)
        img[(x - cx) ** 2 + (y - cy) ** 2 < rad**2] = rng.integers(0, 255, 3)
    img = cv2.GaussianBlur(img, (0, 0), 2.0)  # photo-like edges (4:2:0 chroma cannot hold hard ones)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@dataclass
class LiveServer:
    """A real `clipforge serve` process on a free port."""

    home: Path
    keys: tuple[str, ...] = ("key-alpha", "key-beta")
    workers: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def headers(self, key: int = 0) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[key]}"}

    def client(self, key: int = 0) -> httpx.Client:
        """An HTTP client for this server, authenticated with `keys[key]`."""
        return httpx.Client(base_url=self.url, headers=self.headers(key), timeout=30)

    def env(self) -> dict[str, str]:
        config = self.home / "models.toml"
        if not config.exists():
            config.write_text(TEST_MODELS_TOML)
        return {**os.environ, "CLIPFORGE_HOME": str(self.home), "CLIPFORGE_API_KEYS": ",".join(self.keys),
                "CLIPFORGE_MODELS_CONFIG": str(config), "CLIPFORGE_LEASE_SECONDS": "3",
                **self.extra_env}

    def start(self, wait_ready: bool = True) -> LiveServer:
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.home / "server.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "clipforge.cli", "serve", "--port", str(self.port),
             "--workers", str(self.workers)], env=self.env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.wait("/readyz" if wait_ready else "/healthz")
        return self

    def wait(self, path: str, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log()[-3000:]}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{path} not ready: {self.log()[-3000:]}")

    def kill(self) -> None:
        """Hard kill of the whole process tree (api and embedded workers)."""
        if self.proc:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
            self.proc = None

    def log(self) -> str:
        path = self.home / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


def wait_terminal(client: httpx.Client, gen_id: str, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        body = client.get("/v2/video/generations", params={"generation_id": gen_id}).json()
        if body["status"] in ("completed", "error"):
            return body
        time.sleep(0.25)
    raise TimeoutError(f"generation {gen_id} did not finish: {body}")


@contextmanager
def calls(module) -> Iterator[list[int]]:
    """Count forward calls of a torch module."""
    count = [0]
    handle = module.register_forward_hook(lambda *a: count.__setitem__(0, count[0] + 1))
    try:
        yield count
    finally:
        handle.remove()
