"""The webhook outbox, secrets and run-time history parts of the JobStore contract, on every backend
(the fixtures come from test_store_contract: memory, SQLite, PostgreSQL where one answers)."""

from __future__ import annotations

import base64
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from clipforge.core.job import JobStatus
from clipforge.jobs.webhooks import GIVE_UP_AFTER_SECONDS, delivery_origin, next_attempt_at, retry_delay
from jobs import test_store_contract as contract

add = contract.add
backend, store = contract.backend, contract.store  # the contract's fixtures, for this module too

HOOK = {"url": "https://example.com/hook"}


def types(store, job_id: str) -> list[str]:
    return [d["event_type"] for d in store.deliveries(job_id)]


# -- secrets -------------------------------------------------------------------------------------
def test_webhook_secret_is_made_once_per_owner_and_rotates(backend):
    first, second = backend.open(), backend.open()
    secret = first.webhook_secret("alice")
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    assert first.webhook_secret("alice") == secret
    assert second.webhook_secret("alice") == secret  # stored, not per handle
    other = first.webhook_secret("bob")
    assert other != secret
    rotated = second.webhook_secret("alice", rotate=True)
    assert rotated != secret and rotated.startswith("whsec_")
    assert first.webhook_secret("alice") == rotated
    assert first.webhook_secret("bob") == other


def test_concurrent_first_uses_agree_on_one_secret(backend):
    stores = [backend.open() for _ in range(4)]
    barrier = threading.Barrier(4)

    def get(i: int) -> str:
        barrier.wait()
        return stores[i].webhook_secret("carol")

    with ThreadPoolExecutor(4) as pool:
        assert len(set(pool.map(get, range(4)))) == 1


# -- what enqueues a delivery --------------------------------------------------------------------
def test_finish_enqueues_completed_and_failed_by_default(store):
    done, failed, silent = add(store, webhook=HOOK), add(store, webhook=HOOK), add(store)
    for job in (done, failed, silent):
        assert store.claim("w1", ["preview"], 60).id == job.id
    assert store.deliveries(done.id) == []  # "started" was not asked for
    store.finish(done.id, "w1", JobStatus.COMPLETED, outputs={"video": "a.mp4"})
    store.finish(failed.id, "w1", JobStatus.FAILED, error={"name": "EngineError", "message": "boom"})
    store.finish(silent.id, "w1", JobStatus.COMPLETED)
    assert types(store, done.id) == ["generation.completed"]
    assert types(store, failed.id) == ["generation.failed"]
    assert store.deliveries(silent.id) == []
    d = store.deliveries(done.id)[0]
    assert d["id"].startswith("msg_") and (d["owner"], d["url"], d["status"], d["attempts"]) == (
        "alice", HOOK["url"], "pending", 0)
    assert d["next_attempt_at"] <= time.time() + 1 and d["last_error"] is None


def test_a_refused_finish_enqueues_nothing(store):
    job = add(store, webhook=HOOK)
    store.claim("w1", ["preview"], 60)
    assert not store.finish(job.id, "intruder", JobStatus.COMPLETED)
    assert store.deliveries(job.id) == []


def test_events_filter_and_started_only_on_the_first_claim(store):
    job = add(store, webhook={**HOOK, "events": ["started"]})
    store.claim("w1", ["preview"], 0.05)
    assert types(store, job.id) == ["generation.started"]
    time.sleep(0.15)
    assert store.claim("w2", ["preview"], 60).id == job.id  # a retry after a lost lease: no second "started"
    assert store.release(job.id, "w2")
    assert store.claim("w3", ["preview"], 60).id == job.id  # nor after a hand-back
    store.finish(job.id, "w3", JobStatus.COMPLETED)  # "completed" was not asked for
    assert types(store, job.id) == ["generation.started"]


def test_cancel_of_a_queued_job_enqueues_failed(store):
    job = add(store, webhook=HOOK)
    store.cancel(job.id, "alice")
    assert types(store, job.id) == ["generation.failed"]


def test_cancel_of_a_running_job_enqueues_when_the_worker_ends_it(store):
    job = add(store, webhook={**HOOK, "events": ["failed"]})
    store.claim("w1", ["preview"], 60)
    store.cancel(job.id, "alice")
    assert store.deliveries(job.id) == []
    store.finish(job.id, "w1", JobStatus.CANCELLED, error={"name": "Cancelled", "message": "by request"})
    assert types(store, job.id) == ["generation.failed"]


def test_lost_worker_and_cancelled_hand_back_enqueue_failed(store):
    lost = add(store, webhook=HOOK, max_attempts=1)
    store.claim("w1", ["preview"], 0.05)
    time.sleep(0.15)
    assert store.reclaim_expired() == 1
    assert store.get(lost.id).status == JobStatus.FAILED
    assert types(store, lost.id) == ["generation.failed"]

    requeued = add(store, webhook=HOOK)
    store.claim("w1", ["preview"], 0.05)
    time.sleep(0.15)
    store.reclaim_expired()
    assert store.deliveries(requeued.id) == []  # back in the queue is not an event

    handed = requeued
    store.claim("w2", ["preview"], 60)
    store.cancel(handed.id, "alice")
    assert store.release(handed.id, "w2")
    assert types(store, handed.id) == ["generation.failed"]


def test_expired_lease_of_a_cancel_requested_job_enqueues_failed(store):
    job = add(store, webhook=HOOK)
    store.claim("w1", ["preview"], 0.05)
    store.cancel(job.id, "alice")
    time.sleep(0.15)
    store.reclaim_expired()
    assert types(store, job.id) == ["generation.failed"]


# -- dispatching -----------------------------------------------------------------------------------
def _completed_with_hook(store, url: str = HOOK["url"]) -> str:
    job = add(store, webhook={"url": url})
    store.claim("w1", ["preview"], 60)
    store.finish(job.id, "w1", JobStatus.COMPLETED)
    return store.deliveries(job.id)[0]["id"]


def test_claim_deliveries_leases_each_due_delivery(backend):
    store, other = backend.open(), backend.open()
    ids = [_completed_with_hook(store) for _ in range(3)]
    first = store.claim_deliveries(2, 0.3)
    assert [d["id"] for d in first] == ids[:2]
    assert first[0]["event_type"] == "generation.completed" and first[0]["owner"] == "alice"
    assert [d["id"] for d in other.claim_deliveries(10, 0.3)] == ids[2:]
    assert store.claim_deliveries(10, 0.3) == []  # all leased
    time.sleep(0.45)
    assert sorted(d["id"] for d in other.claim_deliveries(10, 60)) == sorted(ids)  # leases ran out


def test_concurrent_dispatchers_never_get_the_same_delivery(backend):
    store = backend.open()
    ids = {_completed_with_hook(store) for _ in range(12)}
    handles = [backend.open() for _ in range(4)]
    barrier = threading.Barrier(4)

    def grab(i: int) -> list[str]:
        barrier.wait()
        got = []
        for _ in range(6):
            got += [d["id"] for d in handles[i].claim_deliveries(2, 60)]
        return got

    with ThreadPoolExecutor(4) as pool:
        claimed = [d for batch in pool.map(grab, range(4)) for d in batch]
    assert sorted(claimed) == sorted(ids)


def test_delivery_origin_is_scheme_host_and_port_lower_cased():
    assert delivery_origin("HTTPS://Hooks.Example.COM/in?x=1") == "https://hooks.example.com:443"
    assert delivery_origin("https://hooks.example.com:443/other") == "https://hooks.example.com:443"
    assert delivery_origin("https://hooks.example.com.:8443/in") == "https://hooks.example.com:8443"
    assert delivery_origin("http://hooks.example.com/in") == "http://hooks.example.com:80"
    assert delivery_origin("http://user:pw@[2001:DB8::1]:9000/in") == "http://[2001:db8::1]:9000"


def test_claim_deliveries_caps_each_receiver_and_leaves_the_rest_due(backend, monkeypatch):
    if backend.name == "postgres":  # several pages of due rows, past the capped receiver's
        from clipforge.jobs import postgres
        monkeypatch.setattr(postgres, "DUE_PAGE", 2)
    store = backend.open()
    a = [_completed_with_hook(store, "https://a.example.com/hook") for _ in range(4)]
    a.append(_completed_with_hook(store, "HTTPS://A.example.com:443/other"))  # the same receiver
    other_port = _completed_with_hook(store, "https://a.example.com:8443/hook")
    other_scheme = _completed_with_hook(store, "http://a.example.com/hook")
    a_origin = "https://a.example.com:443"

    def rows() -> dict[str, dict]:
        return {d["id"]: d for job in store.list("alice", limit=20) for d in store.deliveries(job.id)}

    before = rows()
    first = store.claim_deliveries(10, 60, per_origin=2, busy={a_origin: 1})
    assert [d["id"] for d in first] == [a[0], other_port, other_scheme]
    now, after = time.time(), rows()
    for held in a[1:]:  # skipped at the cap: untouched, still due, no attempt counted
        assert after[held] == before[held]
        assert (after[held]["status"], after[held]["attempts"]) == ("pending", 0)
        assert after[held]["next_attempt_at"] <= now
    assert after[a[0]]["next_attempt_at"] > now + 50  # the claimed one is leased
    assert store.claim_deliveries(10, 60, per_origin=2, busy={a_origin: 2}) == []
    assert [d["id"] for d in store.claim_deliveries(1, 60, per_origin=2)] == [a[1]]  # the limit still holds
    assert [d["id"] for d in store.claim_deliveries(10, 60, per_origin=2, busy={a_origin: 1})] == [a[2]]
    assert [d["id"] for d in store.claim_deliveries(10, 60)] == a[3:]  # no cap: the rest, oldest first


def test_finish_delivery_records_outcomes(store):
    delivered, retried, failed = (_completed_with_hook(store) for _ in range(3))
    store.claim_deliveries(10, 60)
    store.finish_delivery(delivered, True)
    retry_at = time.time() + 0.2
    store.finish_delivery(retried, False, "HTTP 500", retry_at)
    store.finish_delivery(failed, False, "HTTP 410", None)
    rows = {d["id"]: d for job in store.list("alice", limit=10) for d in store.deliveries(job.id)}
    assert (rows[delivered]["status"], rows[delivered]["attempts"], rows[delivered]["last_error"]) == (
        "delivered", 1, None)
    assert rows[delivered]["delivered_at"] is not None
    assert (rows[retried]["status"], rows[retried]["attempts"], rows[retried]["last_error"]) == (
        "pending", 1, "HTTP 500")
    assert rows[retried]["next_attempt_at"] == pytest.approx(retry_at)
    assert (rows[failed]["status"], rows[failed]["attempts"], rows[failed]["last_error"]) == ("failed", 1, "HTTP 410")
    assert store.claim_deliveries(10, 60) == []  # the retry is not due yet; the others are done
    time.sleep(0.3)
    assert [d["id"] for d in store.claim_deliveries(10, 60)] == [retried]


def test_backoff_doubles_caps_and_gives_up():
    assert [retry_delay(n, 5) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert retry_delay(30, 5) == 3600
    now = 1000.0
    fresh = {"attempts": 0, "created_at": now}
    assert next_attempt_at(fresh, 5, now) == now + 5
    old = {"attempts": 20, "created_at": now - GIVE_UP_AFTER_SECONDS + 60}
    assert next_attempt_at(old, 5, now) is None  # the next try would land past 24 h


# -- run-time history for queue ETAs -----------------------------------------------------------------
def test_recent_run_seconds_newest_first_per_engine(store):
    runs = [3.0, 4.5, 6.0]
    for seconds in runs:
        job = add(store)
        store.claim("w1", ["preview"], 60)
        store.finish(job.id, "w1", JobStatus.COMPLETED, outputs={"video": "a.mp4", "run_seconds": seconds})
        time.sleep(0.01)
    other = add(store, engine="fixed")
    store.claim("w1", ["fixed"], 60)
    store.finish(other.id, "w1", JobStatus.COMPLETED, outputs={"run_seconds": 99.0})
    failed = add(store)
    store.claim("w1", ["preview"], 60)
    store.finish(failed.id, "w1", JobStatus.FAILED, error={"name": "EngineError", "message": "boom"})
    add(store)  # queued: no run time
    assert store.recent_run_seconds("preview", 20) == runs[::-1]
    assert store.recent_run_seconds("preview", 2) == [6.0, 4.5]
    assert store.recent_run_seconds("fixed") == [99.0]
    assert store.recent_run_seconds("nobody") == []
