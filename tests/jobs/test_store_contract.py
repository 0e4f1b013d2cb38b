"""The JobStore contract, run against every backend: memory, SQLite (a temp file), PostgreSQL.

PostgreSQL: 127.0.0.1:5432, database `test`, user root or postgres with trust auth, or the URL in
CLIPFORGE_TEST_DATABASE_URL. Each test gets a fresh schema, dropped afterwards. Where no server
answers, the PostgreSQL cases are skipped with the reason.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from clipforge.core.errors import Conflict, NotFound, QuotaExceeded
from clipforge.core.job import Job, JobStatus, new_job_id
from clipforge.jobs.base import LOST_WORKER_MESSAGE, JobStore, LeaseState, open_store
from clipforge.jobs.memory import MemoryJobStore
from clipforge.jobs.rows import queue_timeout_error
from clipforge.jobs.sqlite import SQLiteJobStore
from helpers import find_postgres

PG_URL, PG_SKIP_REASON = find_postgres()


class Backend:
    """Opens stores over one shared database: each `open()` is a new handle (its own connection)."""

    def __init__(self, name: str, open_fn: Callable[[], JobStore]) -> None:
        self.name = name
        self._open_fn = open_fn
        self._opened: list[JobStore] = []

    def open(self) -> JobStore:
        store = self._open_fn()
        self._opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self._opened:
            store.close()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend(request, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "memory":
        shared = MemoryJobStore()
        b = Backend("memory", lambda: shared)
    elif request.param == "sqlite":
        b = Backend("sqlite", lambda: SQLiteJobStore(tmp_path / "jobs.db"))
    else:
        b = _postgres_backend()
    try:
        yield b
    finally:
        b.close_all()
        if b.name == "postgres":
            import psycopg

            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{b.schema}" CASCADE')


def _postgres_backend() -> Backend:
    if PG_URL is None:
        pytest.skip(PG_SKIP_REASON)
    from clipforge.jobs.postgres import PostgresJobStore

    schema = f"contract_{uuid.uuid4().hex[:12]}"
    b = Backend("postgres", lambda: PostgresJobStore(PG_URL, schema=schema, max_connections=4))
    b.schema = schema  # type: ignore[attr-defined]
    return b


@pytest.fixture
def store(backend: Backend) -> JobStore:
    return backend.open()


_clock = [time.time()]


def make_job(owner: str = "alice", engine: str = "preview", **kw) -> Job:
    """A job whose created_at is strictly later than the previous one's (FIFO is by created_at)."""
    _clock[0] = max(_clock[0] + 0.001, time.time())
    kw.setdefault("created_at", _clock[0])
    return Job(id=new_job_id("kling-video/v2.6/pro"), owner=owner, model="kling-video/v2.6/pro",
               engine=engine, params={"prompt": "a red fox", "duration": 5}, **kw)


def add(store: JobStore, **kw) -> Job:
    job, created = store.create(make_job(**kw))
    assert created
    return job


# -- create / get / list -------------------------------------------------------------------------
def test_create_then_get_round_trips_every_field(store):
    job = make_job(webhook={"url": "https://example.com/hook"}, idempotency_key="k1", request_hash="h1",
                   remixed_from="old-id", max_attempts=5)
    created, was_new = store.create(job)
    assert was_new and created.id == job.id
    got = store.get(job.id, "alice")
    assert got == job
    assert store.get(job.id) == job  # no owner: the worker's view


def test_get_refuses_other_owners_and_unknown_ids(store):
    job = add(store)
    with pytest.raises(NotFound):
        store.get(job.id, "mallory")
    with pytest.raises(NotFound):
        store.get("no-such-id", "alice")


def test_list_orders_pages_and_filters(store):
    jobs = [add(store) for _ in range(5)]
    add(store, owner="bob")
    ids = [j.id for j in jobs]
    assert [j.id for j in store.list("alice")] == ids[::-1]
    assert [j.id for j in store.list("alice", order="asc")] == ids
    assert [j.id for j in store.list("alice", limit=2)] == ids[::-1][:2]
    pages, after = [], None
    while page := store.list("alice", limit=2, after=after, order="asc"):
        pages.append([j.id for j in page])
        after = page[-1].id
    assert pages == [ids[0:2], ids[2:4], ids[4:5]]
    assert [j.id for j in store.list("alice", after=ids[2])] == [ids[1], ids[0]]

    store.cancel(ids[1], "alice")
    assert [j.id for j in store.list("alice", status=JobStatus.CANCELLED)] == [ids[1]]
    assert [j.id for j in store.list("alice", status=JobStatus.QUEUED, order="asc")] == [ids[0]] + ids[2:]
    assert [j.owner for j in store.list("bob")] == ["bob"]
    with pytest.raises(NotFound):
        store.list("bob", after=ids[0])  # another owner's id is no anchor


# -- idempotency ---------------------------------------------------------------------------------
def test_idempotent_create_returns_the_earlier_job(store):
    first = add(store, idempotency_key="key-1", request_hash="hash-a")
    again, created = store.create(make_job(idempotency_key="key-1", request_hash="hash-a"))
    assert not created and again.id == first.id
    with pytest.raises(Conflict):
        store.create(make_job(idempotency_key="key-1", request_hash="hash-b"))
    other, created = store.create(make_job(owner="bob", idempotency_key="key-1", request_hash="hash-b"))
    assert created and other.id != first.id  # keys are per owner
    assert len(store.list("alice")) == 1


def test_find_by_idempotency_key_is_per_owner(store):
    first = add(store, idempotency_key="key-9", request_hash="hash-a")
    assert store.find_by_idempotency_key("alice", "key-9").id == first.id
    assert store.find_by_idempotency_key("bob", "key-9") is None
    assert store.find_by_idempotency_key("alice", "other") is None


def test_concurrent_creates_with_one_key_make_one_job(backend):
    stores = [backend.open() for _ in range(4)]
    barrier = threading.Barrier(20)

    def create(i: int) -> tuple[str, bool]:
        barrier.wait()
        job, created = stores[i % 4].create(make_job(idempotency_key="same", request_hash="h"))
        return job.id, created

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(create, range(20)))
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert len(stores[0].list("alice", limit=100)) == 1


# -- active-job quota ----------------------------------------------------------------------------
def test_quota_counts_queued_and_running_jobs_of_the_owner(store):
    first = add(store)
    add(store)
    with pytest.raises(QuotaExceeded) as info:
        store.create(make_job(), max_active=2)
    assert (info.value.limit, info.value.active) == (2, 2) and "2 generations queued or running" in str(info.value)
    assert store.create(make_job(owner="bob"), max_active=2)[1]  # another owner's quota is its own
    claimed = store.claim("w1", ["preview"], lease_seconds=60)
    assert claimed is not None and claimed.id == first.id  # running still counts
    with pytest.raises(QuotaExceeded):
        store.create(make_job(), max_active=2)
    assert store.finish(first.id, "w1", JobStatus.FAILED, error={"name": "x", "message": "y"})
    assert store.create(make_job(), max_active=2)[1]  # a finished job frees its place
    assert len(store.list("alice", limit=100)) == 3


def test_idempotent_retry_gets_its_job_back_when_the_quota_is_full(store):
    job, created = store.create(make_job(idempotency_key="retry-me", request_hash="h"), max_active=1)
    assert created
    again, created = store.create(make_job(idempotency_key="retry-me", request_hash="h"), max_active=1)
    assert (again.id, created) == (job.id, False)
    with pytest.raises(QuotaExceeded):
        store.create(make_job(idempotency_key="another", request_hash="h"), max_active=1)


def test_concurrent_creates_accept_exactly_the_quota(backend):
    stores = [backend.open() for _ in range(4)]  # separate connections, as separate api processes have
    barrier = threading.Barrier(24)

    def create(i: int) -> bool:
        barrier.wait()
        try:
            return stores[i % 4].create(make_job(), max_active=5)[1]
        except QuotaExceeded:
            return False

    with ThreadPoolExecutor(24) as pool:
        accepted = sum(pool.map(create, range(24)))
    assert accepted == 5
    assert len(stores[0].list("alice", limit=100)) == 5


# -- claims --------------------------------------------------------------------------------------
def _claim_all(store: JobStore, worker_id: str, engines: list[str]) -> list[str]:
    got = []
    while (job := store.claim(worker_id, engines, lease_seconds=60)) is not None:
        assert job.status == JobStatus.RUNNING and job.worker_id == worker_id
        got.append(job.id)
        assert store.finish(job.id, worker_id, JobStatus.COMPLETED, outputs={"video": job.id})
    return got


def test_concurrent_claimers_get_each_job_exactly_once(backend):
    setup = backend.open()
    ids = {add(setup).id for _ in range(40)}
    stores = [backend.open() for _ in range(6)]
    barrier = threading.Barrier(6)

    def claimer(i: int) -> list[str]:
        barrier.wait()
        return _claim_all(stores[i], f"w{i}", ["preview"])

    with ThreadPoolExecutor(6) as pool:
        claimed = [job_id for got in pool.map(claimer, range(6)) for job_id in got]
    assert sorted(claimed) == sorted(ids)
    assert all(j.status == JobStatus.COMPLETED and j.attempts == 1 for j in setup.list("alice", limit=100))


def _process_claimer(path: str, worker_id: str, barrier, results) -> None:
    store = SQLiteJobStore(path)
    barrier.wait()
    results.put(_claim_all(store, worker_id, ["preview"]))
    store.close()


def test_sqlite_claimers_in_several_processes_get_each_job_exactly_once(tmp_path):
    path = str(tmp_path / "jobs.db")
    setup = SQLiteJobStore(path)
    ids = {add(setup).id for _ in range(60)}
    # fork: the suite imports test modules by path (--import-mode=importlib), so a spawned child could
    # not import this module to find its target. Each child opens its own connection all the same.
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_process_claimer, args=(path, f"p{i}", barrier, results))
             for i in range(4)]
    for p in procs:
        p.start()
    claimed = [job_id for _ in procs for job_id in results.get(timeout=120)]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert sorted(claimed) == sorted(ids)
    setup.close()


def _process_opener(path: str, barrier, results) -> None:
    barrier.wait()
    try:
        store = SQLiteJobStore(path)
        store.create(make_job())
        store.close()
        results.put("ok")
    except Exception as exc:  # reported to the parent, which asserts on it
        results.put(repr(exc))


def test_sqlite_processes_opening_a_new_database_at_once_all_succeed(tmp_path):
    # `clipforge serve` starts its api and workers together on a fresh home directory.
    ctx = multiprocessing.get_context("fork")
    for attempt in range(8):  # a race: several rounds make a regression show
        path = str(tmp_path / f"fresh-{attempt}.db")
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_process_opener, args=(path, barrier, results)) for _ in range(6)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        assert outcomes == ["ok"] * 6
        assert len(SQLiteJobStore(path).list("alice")) == 6


def test_claim_only_for_listed_engines(store):
    preview = add(store, engine="preview")
    ltx = add(store, engine="ltx2")
    assert store.claim("w", [], 60) is None
    assert store.claim("w", ["wan"], 60) is None
    assert store.claim("w", ["ltx2"], 60).id == ltx.id
    assert store.claim("w", ["ltx2"], 60) is None
    assert store.claim("w", ["wan", "preview"], 60).id == preview.id


def test_claim_is_fifo_by_creation_time(store):
    t = time.time()
    late = make_job(created_at=t + 2)
    early = make_job(created_at=t)
    middle = make_job(created_at=t + 1)
    tie = make_job(created_at=t + 1)
    for job in (late, early, middle, tie):
        store.create(job)
    expected = [early.id, *sorted([middle.id, tie.id]), late.id]
    assert [store.claim("w", ["preview"], 60).id for _ in range(4)] == expected
    assert store.claim("w", ["preview"], 60) is None


def test_claim_records_the_attempt(store):
    job = add(store)
    claimed = store.claim("w1", ["preview"], 30)
    assert claimed.id == job.id and claimed.attempts == 1 and claimed.stage == "starting"
    assert claimed.started_at is not None
    assert claimed.lease_expires_at == pytest.approx(time.time() + 30, abs=5)
    assert store.get(job.id).status == JobStatus.RUNNING


# -- heartbeat, events ---------------------------------------------------------------------------
def test_heartbeat_records_progress_stage_and_events(store):
    job = add(store)
    store.claim("w1", ["preview"], 60)
    assert store.heartbeat(job.id, "w1", 60, progress=40, stage="denoising") == LeaseState.OK
    got = store.get(job.id, "alice")
    assert (got.progress, got.stage) == (40, "denoising")
    assert store.heartbeat(job.id, "w1", 60) == LeaseState.OK  # no change: no event
    assert store.heartbeat(job.id, "w1", 60, progress=250) == LeaseState.OK
    assert store.get(job.id).progress == 100  # clamped
    assert store.finish(job.id, "w1", JobStatus.COMPLETED, outputs={"video": "v.mp4"})

    events = store.events(job.id)
    assert [(e["status"], e["progress"], e["stage"]) for e in events] == [
        ("queued", 0, None), ("running", 0, "starting"), ("running", 40, "denoising"),
        ("running", 100, "denoising"), ("completed", 100, None)]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert store.events(job.id, after_seq=seqs[2]) == events[3:]
    assert store.events(job.id, after_seq=seqs[-1]) == []
    assert all(isinstance(e["ts"], float) for e in events)


def test_heartbeat_answers_cancel_after_cancel(store):
    job = add(store)
    store.claim("w1", ["preview"], 60)
    flagged = store.cancel(job.id, "alice")
    assert flagged.status == JobStatus.RUNNING and flagged.cancel_requested
    assert store.heartbeat(job.id, "w1", 60, progress=10) == LeaseState.CANCEL
    assert store.finish(job.id, "w1", JobStatus.CANCELLED, error={"name": "Cancelled", "message": "by request"})
    assert store.get(job.id).status == JobStatus.CANCELLED


def test_heartbeat_answers_lost_to_a_worker_whose_lease_was_reclaimed(store):
    job = add(store)
    store.claim("w1", ["preview"], 0.05)
    store.heartbeat(job.id, "w1", 0.05, progress=30)
    time.sleep(0.15)
    assert store.reclaim_expired() == 1
    assert store.heartbeat(job.id, "w1", 60, progress=50) == LeaseState.LOST
    assert not store.finish(job.id, "w1", JobStatus.COMPLETED)
    requeued = store.get(job.id)
    assert (requeued.status, requeued.attempts, requeued.progress, requeued.worker_id) == (
        JobStatus.QUEUED, 1, 0, None)
    assert store.heartbeat("no-such-id", "w1", 60) == LeaseState.LOST


def test_expired_lease_is_requeued_and_claimed_again(store):
    job = add(store)
    store.claim("w1", ["preview"], 0.05)
    time.sleep(0.15)
    again = store.claim("w2", ["preview"], 60)  # claim reclaims expired leases first
    assert again.id == job.id and again.attempts == 2 and again.worker_id == "w2"
    assert store.heartbeat(job.id, "w1", 60) == LeaseState.LOST
    assert store.heartbeat(job.id, "w2", 60) == LeaseState.OK
    assert [e["status"] for e in store.events(job.id)] == ["queued", "running", "queued", "running"]


def test_live_lease_is_not_reclaimed(store):
    job = add(store)
    store.claim("w1", ["preview"], 60)
    assert store.reclaim_expired() == 0
    assert store.claim("w2", ["preview"], 60) is None
    assert store.get(job.id).worker_id == "w1"


def test_past_max_attempts_the_job_fails_with_the_worker_lost_message(store):
    job = add(store, max_attempts=2)
    for attempt in (1, 2):
        claimed = store.claim(f"w{attempt}", ["preview"], 0.05)
        assert claimed.id == job.id and claimed.attempts == attempt
        store.heartbeat(job.id, f"w{attempt}", 0.05, progress=10 * attempt)
        time.sleep(0.15)
    assert store.reclaim_expired() == 1
    failed = store.get(job.id, "alice")
    assert failed.status == JobStatus.FAILED and failed.terminal and failed.finished_at is not None
    assert failed.error == {"name": "WorkerLost", "message": LOST_WORKER_MESSAGE.format(n=2)}
    assert (failed.worker_id, failed.lease_expires_at, failed.stage) == (None, None, None)
    assert store.claim("w3", ["preview"], 60) is None
    last = store.events(job.id)[-1]
    assert (last["status"], last["progress"]) == ("failed", 20)


def test_expired_lease_of_a_cancel_requested_job_ends_cancelled(store):
    job = add(store)
    store.claim("w1", ["preview"], 0.05)
    store.cancel(job.id, "alice")
    time.sleep(0.15)
    assert store.reclaim_expired() == 1
    cancelled = store.get(job.id)
    assert cancelled.status == JobStatus.CANCELLED and cancelled.error["name"] == "Cancelled"
    assert (cancelled.worker_id, cancelled.lease_expires_at, cancelled.finished_at is None) == (None, None, False)
    assert store.claim("w2", ["preview"], 60) is None


# -- finish, cancel, delete, expire --------------------------------------------------------------
def test_finish_only_by_the_worker_holding_the_job(store):
    job = add(store)
    store.claim("w1", ["preview"], 60)
    assert not store.finish(job.id, "intruder", JobStatus.COMPLETED)
    assert store.get(job.id).status == JobStatus.RUNNING
    expires = time.time() + 3600
    assert store.finish(job.id, "w1", JobStatus.COMPLETED, outputs={"video": "a.mp4"}, expires_at=expires)
    done = store.get(job.id)
    assert (done.status, done.progress, done.outputs, done.stage, done.lease_expires_at) == (
        JobStatus.COMPLETED, 100, {"video": "a.mp4"}, None, None)
    assert done.expires_at == pytest.approx(expires) and done.finished_at is not None
    assert not store.finish(job.id, "w1", JobStatus.FAILED)  # already finished
    assert not store.finish("no-such-id", "w1", JobStatus.COMPLETED)


def test_finish_failed_keeps_progress_and_error(store):
    job = add(store)
    store.claim("w1", ["preview"], 60)
    store.heartbeat(job.id, "w1", 60, progress=60)
    assert store.finish(job.id, "w1", JobStatus.FAILED, error={"name": "EngineError", "message": "boom"})
    failed = store.get(job.id)
    assert (failed.status, failed.progress, failed.error) == (
        JobStatus.FAILED, 60, {"name": "EngineError", "message": "boom"})


def test_cancel_queued_is_immediate_and_terminal_is_conflict(store):
    job = add(store)
    cancelled = store.cancel(job.id, "alice")
    assert cancelled.status == JobStatus.CANCELLED and cancelled.finished_at is not None
    assert cancelled.error["name"] == "Cancelled"
    assert store.get(job.id).status == JobStatus.CANCELLED
    assert store.claim("w1", ["preview"], 60) is None
    with pytest.raises(Conflict):
        store.cancel(job.id, "alice")
    done = add(store)
    assert store.claim("w1", ["preview"], 60).id == done.id
    store.finish(done.id, "w1", JobStatus.COMPLETED)
    with pytest.raises(Conflict):
        store.cancel(done.id, "alice")
    with pytest.raises(NotFound):
        store.cancel(add(store).id, "mallory")


def test_expire_due_marks_completed_jobs_past_expiry(store):
    now = time.time()
    due, later, failed = add(store), add(store), add(store)
    for job, status, expires in ((due, JobStatus.COMPLETED, now - 1), (later, JobStatus.COMPLETED, now + 3600),
                                 (failed, JobStatus.FAILED, now - 1)):
        assert store.claim("w1", ["preview"], 60).id == job.id
        store.finish(job.id, "w1", status, expires_at=expires)
    expired = store.expire_due(now)
    assert [(j.id, j.status) for j in expired] == [(due.id, JobStatus.EXPIRED)]
    assert expired[0].media_token == due.media_token  # the caller deletes media by it
    assert store.get(due.id).status == JobStatus.EXPIRED
    assert store.get(later.id).status == JobStatus.COMPLETED
    assert store.get(failed.id).status == JobStatus.FAILED
    assert store.expire_due(now) == []
    assert store.events(due.id)[-1]["status"] == "expired"


def test_delete_removes_the_job_and_its_events(store):
    job = add(store)
    with pytest.raises(NotFound):
        store.delete(job.id, "mallory")
    removed = store.delete(job.id, "alice")
    assert removed.id == job.id
    with pytest.raises(NotFound):
        store.get(job.id)
    assert store.events(job.id) == []
    with pytest.raises(NotFound):
        store.delete(job.id, "alice")


def test_deleting_a_running_job_makes_its_worker_stop(store):
    job = add(store)
    store.claim("w1", ["preview"], 60)
    store.delete(job.id, "alice")
    assert store.heartbeat(job.id, "w1", 60) == LeaseState.LOST
    assert not store.finish(job.id, "w1", JobStatus.COMPLETED)


def test_queue_position_counts_queued_jobs_ahead_for_the_same_engine(store):
    a, other, b, c = add(store), add(store, engine="ltx2"), add(store), add(store)
    assert [store.queue_position(j) for j in (a, b, c)] == [0, 1, 2]
    assert store.queue_position(other) == 0
    store.claim("w1", ["preview"], 60)
    assert [store.queue_position(j) for j in (b, c)] == [0, 1]


# -- workers, migrations, waking -----------------------------------------------------------------
def test_register_and_list_live_workers(store):
    store.register_worker("w1", {"engines": {"preview": {"ready": True}}})
    store.register_worker("w2", {"engines": {}})
    store.register_worker("w1", {"engines": {"preview": {"ready": False}}})
    live = {w["id"]: w for w in store.live_workers(60)}
    assert set(live) == {"w1", "w2"}
    assert live["w1"]["info"] == {"engines": {"preview": {"ready": False}}}
    assert live["w1"]["seen_at"] == pytest.approx(time.time(), abs=5)
    store.remove_worker("w2")
    store.remove_worker("never-registered")
    assert [w["id"] for w in store.live_workers(60)] == ["w1"]
    time.sleep(0.3)
    assert store.live_workers(0.1) == []


def test_migrations_apply_once(backend):
    first = backend.open()
    assert first.migrate() == []
    assert backend.open().migrate() == []  # opening again applies nothing new


def test_concurrent_first_opens_apply_migrations_once(backend):
    if backend.name == "memory":
        pytest.skip("no schema")
    barrier = threading.Barrier(4)

    def open_one(_: int) -> JobStore:
        barrier.wait()
        return backend.open()

    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(open_one, range(4)))
    add(stores[0])
    assert len(stores[3].list("alice")) == 1
    assert all(s.migrate() == [] for s in stores)


def test_wait_for_work_returns_within_its_timeout(store):
    started = time.monotonic()
    for _ in range(3):
        store.wait_for_work(0.05)
    assert time.monotonic() - started < 5


def test_postgres_wait_for_work_wakes_on_insert_and_requeue(backend):
    if backend.name != "postgres":
        pytest.skip("LISTEN/NOTIFY: PostgreSQL only")
    waiter, submitter = backend.open(), backend.open()
    waiter.wait_for_work(10)  # the first call starts listening and returns at once

    def wait_then_submit(action: Callable[[], object]) -> float:
        timer = threading.Timer(0.3, action)
        started = time.monotonic()
        timer.start()
        waiter.wait_for_work(30)
        timer.join()
        return time.monotonic() - started

    assert wait_then_submit(lambda: add(submitter)) < 10
    assert submitter.claim("w1", ["preview"], 0.05) is not None
    time.sleep(0.1)
    waiter.wait_for_work(0)  # drain the notification of nothing pending
    assert wait_then_submit(submitter.reclaim_expired) < 10
    assert waiter.claim("w2", ["preview"], 60) is not None


def test_postgres_schema_from_url_options(backend):
    if backend.name != "postgres":
        pytest.skip("PostgreSQL only")
    sep = "&" if "?" in PG_URL else "?"
    store = open_store(f"{PG_URL}{sep}options=-csearch_path%3D{backend.schema}")
    try:
        job = add(store)
        assert backend.open().get(job.id).id == job.id  # the same schema as the `schema=` handle
        assert store.migrate() == []
    finally:
        store.close()


def test_postgres_store_works_without_psycopg_pool(backend, monkeypatch):
    if backend.name != "postgres":
        pytest.skip("PostgreSQL only")
    import clipforge.jobs.postgres as pg

    monkeypatch.setattr(pg, "ConnectionPool", None)  # as when psycopg_pool is not installed
    store = pg.PostgresJobStore(PG_URL, schema=backend.schema)
    try:
        ids = {add(store).id for _ in range(10)}
        with ThreadPoolExecutor(3) as pool:
            claimed = [j for got in pool.map(lambda i: _claim_all(store, f"w{i}", ["preview"]), range(3))
                       for j in got]
        assert sorted(claimed) == sorted(ids)
    finally:
        store.close()


# -- queue-wait limit ------------------------------------------------------------------------------
def test_fail_overdue_queued_fails_jobs_queued_past_the_limit_and_frees_the_quota(store):
    long_ago = time.time() - 100
    old = add(store, updated_at=long_ago, webhook={"url": "https://example.com/hook"})
    fresh = add(store)
    running = add(store, engine="ltx2", updated_at=long_ago)
    assert store.claim("w1", ["ltx2"], 60).id == running.id
    with pytest.raises(QuotaExceeded):
        store.create(make_job(), max_active=3)

    failed = store.fail_overdue_queued(10)
    assert [j.id for j in failed] == [old.id]
    expected = queue_timeout_error(10, "preview")
    assert expected["code"] == "queue_timeout" and "within 10 s" in expected["message"]
    assert "'preview'" in expected["message"]
    assert (failed[0].status, failed[0].error) == (JobStatus.FAILED, expected)
    got = store.get(old.id, "alice")
    assert (got.status, got.error, got.worker_id, got.stage) == (JobStatus.FAILED, expected, None, None)
    assert got.finished_at is not None and got.terminal
    assert store.events(old.id)[-1]["status"] == "failed"
    assert [d["event_type"] for d in store.deliveries(old.id)] == ["generation.failed"]
    assert [j.id for j in store.finished_since(0.0)] == [old.id]  # what the input sweeper pages through
    assert store.create(make_job(), max_active=3)[1]  # its place in the quota is free again
    assert store.get(fresh.id).status == JobStatus.QUEUED
    assert store.get(running.id).status == JobStatus.RUNNING
    assert store.claim("w2", ["preview"], 60).id == fresh.id  # the failed job is never claimed
    assert store.fail_overdue_queued(10) == []
    with pytest.raises(Conflict):
        store.cancel(old.id, "alice")


def test_queue_wait_starts_again_when_a_job_goes_back_to_the_queue(store):
    released = add(store, updated_at=time.time() - 100)
    store.claim("w1", ["preview"], 60)
    assert store.release(released.id, "w1")
    reclaimed = add(store, engine="ltx2", updated_at=time.time() - 100)
    store.claim("w1", ["ltx2"], 0.05)
    time.sleep(0.15)
    assert store.reclaim_expired() == 1
    assert {store.get(j.id).status for j in (released, reclaimed)} == {JobStatus.QUEUED}
    assert store.fail_overdue_queued(10) == []
    time.sleep(0.3)
    assert {j.id for j in store.fail_overdue_queued(0.2)} == {released.id, reclaimed.id}


def test_fail_overdue_queued_racing_claims_ends_each_job_one_way(backend):
    setup = backend.open()
    ids = {add(setup, updated_at=time.time() - 100).id for _ in range(40)}
    stores = [backend.open() for _ in range(6)]
    barrier = threading.Barrier(6)

    def claimer(i: int) -> list[str]:
        barrier.wait()
        got = []
        while (job := stores[i].claim(f"w{i}", ["preview"], 60)) is not None:
            got.append(job.id)
        return got

    def sweeper(i: int) -> list[str]:
        barrier.wait()
        failed: list[str] = []
        while stores[i].active_by_engine().get(("preview", "queued")):
            failed += [j.id for j in stores[i].fail_overdue_queued(10)]
        return failed

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda i: (claimer if i < 4 else sweeper)(i), range(6)))
    claimed = [job_id for got in results[:4] for job_id in got]
    failed = [job_id for got in results[4:] for job_id in got]
    assert len(claimed) == len(set(claimed)) and len(failed) == len(set(failed))
    assert not set(claimed) & set(failed) and set(claimed) | set(failed) == ids
    for job_id in failed:
        job = setup.get(job_id)
        assert (job.status, job.worker_id, job.error["code"]) == (JobStatus.FAILED, None, "queue_timeout")
    for i, got in enumerate(results[:4]):
        for job_id in got:
            assert setup.get(job_id).status == JobStatus.RUNNING
            assert stores[i].finish(job_id, f"w{i}", JobStatus.COMPLETED, outputs={"video": job_id})


# -- release (graceful shutdown), metrics reads ----------------------------------------------------
def test_release_requeues_without_counting_the_attempt(store):
    job = add(store)
    claimed = store.claim("w1", ["preview"], 60)
    store.heartbeat(job.id, "w1", 60, progress=40, stage="denoising")
    assert not store.release(job.id, "w2")  # only the holder hands a job back
    assert store.release(job.id, "w1")
    back = store.get(job.id)
    assert (back.status, back.worker_id, back.attempts, back.progress, back.stage) == (
        JobStatus.QUEUED, None, claimed.attempts - 1, 0, None)
    assert store.events(job.id)[-1]["status"] == "queued"
    assert store.heartbeat(job.id, "w1", 60) == LeaseState.LOST
    assert not store.finish(job.id, "w1", JobStatus.COMPLETED)
    again = store.claim("w2", ["preview"], 60)
    assert again.id == job.id and again.attempts == claimed.attempts
    assert not store.release(job.id, "w1")


def test_release_of_a_cancel_requested_job_ends_it_cancelled(store):
    job = add(store)
    store.claim("w1", ["preview"], 60)
    store.cancel(job.id, "alice")
    assert store.release(job.id, "w1")
    assert store.get(job.id).status == JobStatus.CANCELLED
    assert store.claim("w2", ["preview"], 60) is None


def test_postgres_release_wakes_waiting_workers(backend):
    if backend.name != "postgres":
        pytest.skip("LISTEN/NOTIFY: PostgreSQL only")
    waiter, holder = backend.open(), backend.open()
    job = add(holder)
    assert holder.claim("w1", ["preview"], 60).id == job.id
    waiter.wait_for_work(10)  # starts listening
    timer = threading.Timer(0.3, holder.release, (job.id, "w1"))
    started = time.monotonic()
    timer.start()
    waiter.wait_for_work(30)
    timer.join()
    assert time.monotonic() - started < 10
    assert waiter.claim("w2", ["preview"], 60).id == job.id


def test_active_by_engine_counts_queued_and_running_jobs_per_engine(store):
    add(store), add(store), add(store, engine="ltx2"), add(store, engine="ltx2")
    assert store.active_by_engine() == {("preview", "queued"): 2, ("ltx2", "queued"): 2}
    running = store.claim("w1", ["ltx2"], 60)
    assert store.active_by_engine() == {("preview", "queued"): 2, ("ltx2", "queued"): 1, ("ltx2", "running"): 1}
    store.finish(running.id, "w1", JobStatus.COMPLETED, outputs={"video": "v"})
    store.cancel(store.claim("w1", ["preview"], 60).id, "alice")  # a cancel flag: still running
    assert store.active_by_engine() == {("preview", "queued"): 1, ("preview", "running"): 1, ("ltx2", "queued"): 1}


def test_counts_and_finished_since(store):
    a, b, c = add(store), add(store), add(store, engine="other")
    assert store.counts() == {("kling-video/v2.6/pro", "queued"): 3}
    for _ in range(2):
        job = store.claim("w1", ["preview"], 60)
        store.finish(job.id, "w1", JobStatus.COMPLETED, outputs={"video": "v"})
    store.cancel(c.id, "alice")
    assert store.counts() == {("kling-video/v2.6/pro", "completed"): 2, ("kling-video/v2.6/pro", "cancelled"): 1}
    done = store.finished_since(0.0)
    assert [j.id for j in done[:2]] == [a.id, b.id] and {j.id for j in done} == {a.id, b.id, c.id}
    assert all(j.finished_at is not None for j in done)
    first = done[0]
    assert [j.id for j in store.finished_since(first.finished_at, first.id)] == [j.id for j in done[1:]]
    assert [j.id for j in store.finished_since(0.0, limit=1)] == [first.id]
    assert store.finished_since(done[-1].finished_at, done[-1].id) == []


def test_checkpoints_survive_a_lost_worker_and_only_the_holder_writes_them(store):
    job = add(store)
    store.claim("w1", ["preview"], 0.2)
    assert not store.save_checkpoint(job.id, "w2", {"engine": "aiml", "id": "x"})
    assert store.save_checkpoint(job.id, "w1", {"engine": "aiml", "id": "up-1", "urls": {"get": "u"}})
    time.sleep(0.3)
    again = store.claim("w2", ["preview"], 60)  # the lease expired: the next attempt sees the checkpoint
    assert again.id == job.id and again.attempts == 2
    assert again.params["checkpoint"] == {"engine": "aiml", "id": "up-1", "urls": {"get": "u"}}
    assert again.params["prompt"] == "a red fox"  # the rest of params is untouched


def test_reroute_moves_a_job_to_another_engine_without_its_checkpoint(store):
    job = add(store)
    store.claim("w1", ["preview"], 60)
    store.save_checkpoint(job.id, "w1", {"engine": "preview", "id": "up-1"})
    assert not store.reroute(job.id, "w2", "ltx2")
    assert store.reroute(job.id, "w1", "ltx2")
    assert store.claim("w2", ["preview"], 60) is None
    moved = store.claim("w2", ["ltx2"], 60)
    assert moved.id == job.id and moved.engine == "ltx2" and moved.attempts == 1
    assert "checkpoint" not in moved.params
