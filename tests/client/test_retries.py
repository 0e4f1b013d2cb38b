"""Retries and backoff through httpx.MockTransport: no sockets, no real sleeping."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Callable

import httpx
import pytest

from clipforge.client import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    BadRequestError,
    Client,
    RateLimitError,
    RetryPolicy,
    ServiceUnavailableError,
)

QUEUED = {"id": "g1", "status": "queued", "model": "m"}


def scripted(*answers: httpx.Response | Exception) -> tuple[Callable, list[httpx.Request]]:
    """A handler that gives the answers in order (an exception is raised, as a failed connection)."""
    requests: list[httpx.Request] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler, requests


def sync_client(handler: Callable, sleeps: list[float], **kw: object) -> Client:
    client = Client("http://api.test", "k", transport=httpx.MockTransport(handler), **kw)
    client._sleep = sleeps.append
    return client


def test_429_honours_retry_after_then_succeeds():
    handler, requests = scripted(httpx.Response(429, headers={"Retry-After": "3"}, json={"message": "slow down"}),
                                 httpx.Response(200, json=QUEUED))
    sleeps: list[float] = []
    assert sync_client(handler, sleeps).get("g1").status == "queued"
    assert sleeps == [3.0] and len(requests) == 2


def test_retry_after_ms_and_http_date():
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    handler, _ = scripted(httpx.Response(503, headers={"retry-after-ms": "250"}),
                          httpx.Response(503, headers={"Retry-After": when}), httpx.Response(200, json=QUEUED))
    sleeps: list[float] = []
    sync_client(handler, sleeps).get("g1")
    assert sleeps[0] == 0.25 and 3.5 <= sleeps[1] <= 5.0


def test_503_backs_off_exponentially_with_jitter_then_gives_up():
    handler, requests = scripted(*[httpx.Response(503, json={"message": "no engine ready"})] * 4)
    sleeps: list[float] = []
    with pytest.raises(ServiceUnavailableError) as exc:
        sync_client(handler, sleeps, max_retries=3).get("g1")
    assert len(requests) == 4 and exc.value.message == "no engine ready"
    for delay, base in zip(sleeps, (0.5, 1.0, 2.0), strict=True):
        assert 0.75 * base <= delay <= base


def test_connection_errors_are_retried():
    handler, requests = scripted(httpx.ConnectError("refused"), httpx.ReadError("reset"),
                                 httpx.Response(200, json=QUEUED))
    sleeps: list[float] = []
    assert sync_client(handler, sleeps).get("g1").id == "g1"
    assert len(requests) == 3 and len(sleeps) == 2


def test_connection_errors_exhausted():
    handler, _ = scripted(*[httpx.ConnectError("refused")] * 3)
    with pytest.raises(APIConnectionError, match=r"^GET http://\S+: refused$"):
        sync_client(handler, []).get("g1")
    handler, _ = scripted(*[httpx.ReadTimeout("slow")] * 3)
    with pytest.raises(APITimeoutError):
        sync_client(handler, []).get("g1")


def test_create_is_retried_with_one_idempotency_key():
    handler, requests = scripted(httpx.ConnectError("refused"), httpx.Response(429, headers={"Retry-After": "1"}),
                                 httpx.Response(200, json=QUEUED))
    sleeps: list[float] = []
    sync_client(handler, sleeps).generate("x", model="m")
    keys = {r.headers["idempotency-key"] for r in requests}
    assert len(requests) == 3 and len(keys) == 1 and keys.pop().startswith("clipforge-")


def test_400_and_rate_limit_exhaustion_are_not_retried_forever():
    handler, requests = scripted(httpx.Response(400, json={"message": "duration: must be one of (5, 10)",
                                                           "error": {"param": "duration"}}))
    with pytest.raises(BadRequestError) as exc:
        sync_client(handler, []).get("g1")
    assert len(requests) == 1 and exc.value.field == "duration"
    handler, requests = scripted(httpx.Response(429, headers={"Retry-After": "2"}))
    with pytest.raises(RateLimitError) as limited:
        sync_client(handler, [], max_retries=0).get("g1")
    assert len(requests) == 1 and limited.value.retry_after == 2.0


def test_policy_caps_the_backoff_and_ignores_huge_retry_after():
    policy = RetryPolicy(initial_delay=0.5, max_delay=8.0)
    assert all(6.0 <= policy.delay(n) <= 8.0 for n in (4, 10, 30))
    assert 0.375 <= policy.delay(0, retry_after=3600) <= 0.5


def test_async_client_retries_the_same_way():
    handler, requests = scripted(httpx.Response(429, headers={"Retry-After": "2"}), httpx.ConnectError("refused"),
                                 httpx.Response(200, json=QUEUED))
    sleeps: list[float] = []

    async def record(delay: float) -> None:
        sleeps.append(delay)

    async def run() -> str:
        async with AsyncClient("http://api.test", "k", transport=httpx.MockTransport(handler)) as client:
            client._sleep = record
            return (await client.generate("x", model="m")).id

    assert asyncio.run(run()) == "g1"
    assert sleeps[0] == 2.0 and 0.75 <= sleeps[1] <= 1.0 and len(requests) == 3
    assert len({r.headers["idempotency-key"] for r in requests}) == 1


def test_wait_paces_polls_by_retry_after():
    answers = [httpx.Response(200, json={**QUEUED, "status": "generating", "progress": p},
                              headers={"Retry-After": "2"}) for p in (10, 10, 60)]
    handler, _ = scripted(*answers, httpx.Response(200, json={**QUEUED, "status": "completed", "progress": 100}))
    sleeps: list[float] = []
    progress: list[int] = []
    done = sync_client(handler, sleeps).wait("g1", on_progress=lambda g: progress.append(g.progress))
    assert done.succeeded and sleeps == [2.0, 2.0, 2.0] and progress == [10, 60, 100]
