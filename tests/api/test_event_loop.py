"""The api's event loop never waits on store or storage I/O: while a create's input upload (or its job
insert) is slowed down, status polls on the same loop are still answered at once."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest

from clipforge.api.app import create_app
from clipforge.core.job import Job
from clipforge.core.routing import parse_routing
from clipforge.core.settings import Settings
from clipforge.jobs.sqlite import SQLiteJobStore
from clipforge.storage.local import LocalArtifactStore
from helpers import data_uri, gradient_image

SLOW = 1.5  # seconds the slowed call takes
PROMPT = 0.25  # a poll must be answered within this, meanwhile
ROUTING = parse_routing({"models": {"m": {"task": "any", "engines": ["fixed"]}}, "engines": {"fixed": {"steps": 1}}})


class SlowUploads(LocalArtifactStore):
    """Input uploads that take SLOW seconds (an S3 bucket far away)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.uploading = threading.Event()

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self.uploading.set()
        time.sleep(SLOW)
        super().put_bytes(key, data, content_type)


class SlowInserts(SQLiteJobStore):
    """Job inserts that take SLOW seconds (a PostgreSQL server under load)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.uploading = threading.Event()

    def create(self, job: Job, max_active: int = 0) -> tuple[Job, bool]:
        self.uploading.set()
        time.sleep(SLOW)
        return super().create(job, max_active=max_active)


async def polls_while_creating(app, slowed) -> tuple[list[float], httpx.Response]:  # noqa: ANN001
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api", headers={"Authorization": "Bearer k"},
                                 timeout=30) as c:
        first = await c.post("/v2/video/generations", json={"model": "m", "prompt": "polled", "aspect_ratio": "1:1"})
        assert first.status_code == 200, first.text
        slowed.uploading.clear()
        create = asyncio.create_task(c.post("/v2/video/generations", json={
            "model": "m", "prompt": "slow", "image_url": data_uri(gradient_image(320, 320))}))
        while not slowed.uploading.is_set():
            assert not create.done(), (await create).text
            await asyncio.sleep(0.01)
        latencies = []
        while not create.done():
            started = time.monotonic()
            poll = await c.get("/v2/video/generations", params={"generation_id": first.json()["id"]})
            assert poll.status_code == 200 and poll.json()["status"] == "queued", poll.text
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.05)
        return latencies, await create


@pytest.mark.parametrize("slow_part", ["storage upload", "job store insert"])
def test_polls_are_answered_while_a_create_waits_on_slow_io(tmp_path: Path, slow_part: str):
    slow_storage = slow_part == "storage upload"
    store = (SQLiteJobStore if slow_storage else SlowInserts)(tmp_path / "jobs.db")
    artifacts = (SlowUploads if slow_storage else LocalArtifactStore)(tmp_path / "media")
    store.register_worker("w", {"engines": {"fixed": {"ready": True, "reason": None}}})
    app = create_app(Settings(home=tmp_path, api_keys=("k",)), store=store, artifacts=artifacts, routing=ROUTING)
    slowed = artifacts if slow_storage else store
    started = time.monotonic()
    latencies, created = asyncio.run(polls_while_creating(app, slowed))
    assert created.status_code == 200, created.text
    assert time.monotonic() - started >= SLOW
    assert len(latencies) >= 5, latencies  # polls kept coming while the create waited
    assert max(latencies) < PROMPT, latencies
    spec = store.get(created.json()["id"]).params["spec"]
    assert artifacts.exists(spec["image"])  # the upload did happen
