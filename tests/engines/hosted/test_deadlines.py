"""Every wait of a hosted job (Retry-After, backoff, poll interval, download, upstream cancel) ends by the
job's own deadline (`job_timeout_seconds`); a provider asking for a longer wait fails the job at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from clipforge.core.errors import Cancelled, EngineError, EngineUnavailable
from clipforge.core.job import Job, JobStatus
from clipforge.core.routing import parse_routing
from clipforge.core.settings import Settings
from clipforge.core.spec import GenerationSpec
from clipforge.engines.hosted.base import HostedTask
from clipforge.engines.hosted.fal import FalEngine
from clipforge.jobs.memory import MemoryJobStore
from clipforge.storage.local import LocalArtifactStore
from clipforge.worker.loop import Worker
from clipforge.worker.runner import JobRunner
from engines.hosted.hosted_fakes import FakeFal

T2V = "klingai/video-v2-6-pro-text-to-video"
KEY = "fal-deadline-key"
BASE = {"media_hosts": ["*.fal.media"], "poll_seconds": 0.05, "max_poll_seconds": 0.1}


class Clocked(FakeFal):
    """FakeFal that notes when each request arrived; `answer` may replace any API answer."""

    def __init__(self, answer=None) -> None:
        super().__init__(KEY, b"not used")
        self.times: list[tuple[float, str, str]] = []
        self.answer = answer

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.times.append((time.monotonic(), request.method, request.url.path))
        if self.answer is not None and not request.url.host.endswith(".fal.media"):
            response = self.answer(request)
            if response is not None:
                self.requests.append(request)
                return response
        return super().handle(request)

    def after(self, moment: float) -> list[tuple[float, str, str]]:
        return [t for t in self.times if t[0] > moment]


def throttled(request: httpx.Request) -> httpx.Response:
    """Every API request is answered 429, asking for five minutes' patience."""
    return httpx.Response(429, headers={"retry-after": "300"}, json={"detail": "Too many requests"})


def fal(fake: FakeFal, **config) -> FalEngine:
    return FalEngine({**BASE, **config}, transport=fake.transport(), environ={"FAL_KEY": KEY})


def task(tmp_path: Path) -> HostedTask:
    return HostedTask("job-1", T2V, GenerationSpec(prompt="a lighthouse"), tmp_path)


@pytest.mark.timeout(30)  # the old code slept 300 s per retry here
def test_a_429_asking_for_more_than_the_job_has_left_fails_the_job_at_once(tmp_path: Path, monkeypatch):
    """Through the real worker: the job fails within its few seconds, saying what the provider asked and how
    long the job had, and the provider sees no request after the job's deadline."""
    timeout = 4.0
    config = {**BASE, "job_timeout_seconds": timeout}
    routing = parse_routing({"models": {T2V: {"engines": ["fal"]}}, "engines": {"fal": config}})
    monkeypatch.setenv("FAL_KEY", KEY)
    fake = Clocked(throttled)
    store, artifacts = MemoryJobStore(), LocalArtifactStore(tmp_path / "media")
    settings = Settings(home=tmp_path, lease_seconds=5, heartbeat_seconds=1)
    runner = JobRunner(store, artifacts, routing, settings,
                       lambda name: FalEngine(config, transport=fake.transport()))
    worker = Worker(store, artifacts, routing, settings, worker_id="w1", runner=runner)
    worker.check_engines()
    store.create(Job(id="late", owner="o", model=T2V, engine="fal",
                     params={"spec": GenerationSpec(prompt="a lighthouse").to_dict()}))
    started = time.monotonic()
    assert worker.run_once()
    elapsed = time.monotonic() - started
    done = store.get("late")
    assert done.status == JobStatus.FAILED
    message = done.error["message"]
    assert message.startswith("fal: rate limited (HTTP 429): Too many requests; ") and \
        "the provider asked to retry after 300 s and the job has " in message and \
        message.endswith(" s left (job_timeout_seconds)"), message
    assert elapsed < timeout, f"the job took {elapsed:.1f} s; it had {timeout:g} s"
    assert fake.times and not fake.after(started + timeout)
    assert [m for _, m, _ in fake.times] == ["POST"]  # the submit was refused: nothing to poll or cancel


@pytest.mark.timeout(30)
def test_a_throttled_status_poll_stops_at_once_and_cancels_upstream(tmp_path: Path):
    fake = Clocked(lambda r: throttled(r) if r.url.path.endswith("/status") else None)
    started = time.monotonic()
    with pytest.raises(EngineUnavailable, match=r"asked to retry after 300 s and the job has \d+(\.\d)? s left"):
        fal(fake, job_timeout_seconds=30).run(task(tmp_path))
    assert time.monotonic() - started < 10
    assert fake.cancelled  # the upstream job is not left running (and billing)
    assert len(fake.sent("GET", "/status")) == 1  # no retry: it could not be waited for


@pytest.mark.timeout(30)
def test_backoff_without_retry_after_ends_by_the_deadline(tmp_path: Path):
    def down(request: httpx.Request) -> httpx.Response | None:
        return httpx.Response(503, json={"detail": "overloaded"}) if request.url.path.endswith("/status") else None

    fake = Clocked(down)
    started = time.monotonic()
    with pytest.raises(EngineUnavailable, match=r"provider error \(HTTP 503\): overloaded; "
                                                 r"(the next try is due in|the job ran out of time)"):
        fal(fake, job_timeout_seconds=2, max_retries=50).run(task(tmp_path))
    assert time.monotonic() - started < 10
    assert not [t for t in fake.after(started + 2) if t[1] == "GET"]  # no poll past the deadline


@pytest.mark.timeout(30)
def test_the_poll_interval_never_reaches_past_the_deadline(tmp_path: Path):
    """A provider that never finishes, polled every 10 s, with a 1.5 s job timeout: one last poll before
    the deadline, then the timeout; the old loop polled once more after it."""
    fake = Clocked(lambda r: httpx.Response(200, json={"status": "IN_PROGRESS", "logs": []})
                   if r.url.path.endswith("/status") else None)
    started = time.monotonic()
    with pytest.raises(EngineError, match=r"did not finish within 1\.5 s \(job_timeout_seconds\)"):
        fal(fake, job_timeout_seconds=1.5, poll_seconds=10, max_poll_seconds=10).run(task(tmp_path))
    assert time.monotonic() - started < 10
    polls = [t for t in fake.times if t[1] == "GET"]
    assert len(polls) == 2 and not [t for t in polls if t[0] > started + 1.5]
    assert fake.cancelled  # a job given up on is cancelled upstream


@pytest.mark.timeout(30)
def test_a_download_ends_by_the_job_deadline_not_only_download_timeout_seconds(tmp_path: Path):
    slow = Clocked()
    slow.trickle = (200, 0.05)  # the result host sends a byte every 50 ms: 10 s for 200 bytes
    started = time.monotonic()
    with pytest.raises(EngineError, match=r"downloading the result ran past the job's time limit "
                                          r"\(job_timeout_seconds\)"):
        fal(slow, job_timeout_seconds=1.5, download_timeout_seconds=300).run(task(tmp_path))
    assert time.monotonic() - started < 6


@pytest.mark.timeout(30)
def test_cancel_interrupts_a_retry_after_wait_and_a_throttled_upstream_cancel_is_not_waited_for(tmp_path: Path):
    """A 429 asking for 20 s inside a job of an hour: the wait is slept, a cancel ends it within a
    moment; the upstream cancel, itself answered 429 + Retry-After: 300, is given up, not slept on."""
    asked = threading.Event()

    def answer(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/status"):
            asked.set()
            return httpx.Response(429, headers={"retry-after": "20"}, json={"detail": "slow down"})
        if request.method == "PUT":
            return throttled(request)
        return None

    fake = Clocked(answer)
    t = task(tmp_path)
    cancel = threading.Event()

    def on_step(step, total, stage):
        if cancel.is_set():
            raise Cancelled("Cancelled by request")

    t.on_step = on_step
    threading.Thread(target=lambda: (asked.wait(30), time.sleep(0.3), cancel.set()), daemon=True).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        fal(fake).run(t)
    assert time.monotonic() - started < 10  # not the 20 s wait, nor the cancel's 300 s
    assert fake.sent("PUT", "/cancel")  # the upstream cancel was tried
