"""PostgreSQL job store (psycopg 3): the fleet backend.

Claims use `FOR UPDATE SKIP LOCKED`, so many workers on many machines claim without blocking each
other; leases and their expiry use the database's clock, so workers' clocks need not agree. A
trigger notifies channel `clipforge_jobs` whenever a job becomes claimable, and `wait_for_work`
LISTENs on it, so idle workers wake at once instead of polling.

Schema: tables live in the first schema of the connection's search_path. Pick one with the
`schema` argument, or in the URL: `postgresql://host/db?options=-csearch_path%3Dclipforge`.
Either way `migrate()` creates the schema when it is missing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from clipforge.core.errors import Conflict, NotFound, QuotaExceeded
from clipforge.core.job import Job, JobStatus
from clipforge.jobs import migrate
from clipforge.jobs.base import JobStore, LeaseState
from clipforge.jobs.rows import (
    COLUMNS,
    JSON_COLUMNS,
    cancelled_error,
    list_query,
    lost_worker_error,
    queue_timeout_error,
    row_to_job,
)
from clipforge.jobs.webhooks import DELIVERY_COLUMNS, ReceiverCap, delivery_for, new_secret, row_to_delivery

try:  # optional: without it one connection, behind a lock, serves every thread
    from psycopg_pool import ConnectionPool
except ImportError:  # pragma: no cover - depends on the install
    ConnectionPool = None  # type: ignore[assignment,misc]

CHANNEL = "clipforge_jobs"
_NOW = "extract(epoch from clock_timestamp())::double precision"
_COLS = ", ".join(COLUMNS)
_JOB_COLS = ", ".join(f"j.{c}" for c in COLUMNS)

# -- named queries ---------------------------------------------------------------------------
Q_MIGRATE_LOCK = "SELECT pg_advisory_xact_lock(hashtext('clipforge.migrate'))"
Q_SEARCH_PATH_HEAD = "SELECT current_schema(), current_setting('search_path')"
Q_MIGRATIONS_TABLE = ("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                      "name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
Q_APPLIED = "SELECT version FROM schema_migrations"
Q_RECORD_MIGRATION = "INSERT INTO schema_migrations VALUES (%s, %s, %s)"

Q_SELECT = f"SELECT {_COLS} FROM jobs"
Q_INSERT = (f"INSERT INTO jobs ({_COLS}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
            "ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id")
Q_BY_KEY = f"{Q_SELECT} WHERE owner = %s AND idempotency_key = %s"
Q_QUOTA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('clipforge.quota'), hashtext(%s))"
Q_COUNT_ACTIVE = "SELECT count(*) FROM jobs WHERE owner = %s AND status IN ('queued', 'running')"
Q_LOCK_ONE = f"{Q_SELECT} WHERE id = %s FOR UPDATE"
Q_EVENT = ("INSERT INTO job_events (job_id, ts, status, progress, stage) "
           f"VALUES (%s, {_NOW}, %s, %s, %s)")
Q_QUEUE_POSITION = ("SELECT count(*) FROM jobs WHERE status = 'queued' AND engine = %s "
                    "AND (created_at, id) < (%s, %s)")
Q_CLAIM = f"""
WITH next AS (
    SELECT id, started_at IS NULL AS first_start FROM jobs WHERE status = 'queued' AND engine = ANY(%s)
    ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
)
UPDATE jobs j SET status = 'running', worker_id = %s, lease_expires_at = {_NOW} + %s,
    attempts = j.attempts + 1, started_at = COALESCE(j.started_at, {_NOW}), updated_at = {_NOW},
    stage = 'starting'
FROM next WHERE j.id = next.id
RETURNING {_JOB_COLS}, next.first_start"""
Q_HEARTBEAT_LOCK = ("SELECT progress, stage, cancel_requested FROM jobs "
                    "WHERE id = %s AND worker_id = %s AND status = 'running' FOR UPDATE")
Q_HEARTBEAT = (f"UPDATE jobs SET lease_expires_at = {_NOW} + %s, progress = %s, stage = %s, "
               f"updated_at = {_NOW} WHERE id = %s")
Q_FINISH = f"""
UPDATE jobs SET status = %s, outputs = %s, error = %s, expires_at = %s, finished_at = {_NOW},
    updated_at = {_NOW}, lease_expires_at = NULL, stage = NULL,
    progress = CASE WHEN %s THEN 100 ELSE progress END
WHERE id = %s AND worker_id = %s AND status = 'running'
RETURNING progress, owner, webhook"""
Q_EXPIRED_LEASES = (f"SELECT id, attempts, max_attempts, cancel_requested, progress, owner, webhook FROM jobs "
                    f"WHERE status = 'running' AND lease_expires_at < {_NOW} FOR UPDATE SKIP LOCKED")
Q_END_LOST = (f"UPDATE jobs SET status = %s, error = %s, worker_id = NULL, lease_expires_at = NULL, "
              f"stage = NULL, finished_at = {_NOW}, updated_at = {_NOW} WHERE id = %s")
Q_REQUEUE = ("UPDATE jobs SET status = 'queued', worker_id = NULL, lease_expires_at = NULL, progress = 0, "
             f"stage = NULL, updated_at = {_NOW} WHERE id = %s")
# Rows a claim holds (it locks with SKIP LOCKED too) are skipped here, and rows this locks are skipped
# by claims: a job ends up claimed or failed, never both. The error is set per row after (it names the engine).
Q_OVERDUE_QUEUED = (f"SELECT id, engine, progress, owner, webhook FROM jobs WHERE status = 'queued' "
                    f"AND updated_at < {_NOW} - %s ORDER BY created_at, id FOR UPDATE SKIP LOCKED")
Q_FAIL_QUEUED = (f"UPDATE jobs SET status = 'failed', error = %s, stage = NULL, finished_at = {_NOW}, "
                 f"updated_at = {_NOW} WHERE id = %s AND status = 'queued' RETURNING {_COLS}")
Q_RELEASE_LOCK = ("SELECT cancel_requested, progress, owner, webhook FROM jobs "
                  "WHERE id = %s AND worker_id = %s AND status = 'running' FOR UPDATE")
Q_RELEASE = ("UPDATE jobs SET status = 'queued', worker_id = NULL, lease_expires_at = NULL, progress = 0, "
             f"stage = NULL, attempts = GREATEST(attempts - 1, 0), updated_at = {_NOW} WHERE id = %s")
Q_CHECKPOINT = ("UPDATE jobs SET params = CASE WHEN %s THEN params - 'checkpoint' "
                "ELSE jsonb_set(params, '{checkpoint}', %s) END, engine = COALESCE(%s, engine), "
                f"updated_at = {_NOW} WHERE id = %s AND worker_id = %s AND status = 'running'")
Q_COUNTS = "SELECT model, status, count(*) FROM jobs GROUP BY model, status"
Q_ACTIVE_BY_ENGINE = ("SELECT engine, status, count(*) FROM jobs WHERE status IN ('queued', 'running') "
                      "GROUP BY engine, status")
Q_FINISHED_SINCE = (f"{Q_SELECT} WHERE finished_at IS NOT NULL AND (finished_at, id) > (%s, %s) "
                    "ORDER BY finished_at, id LIMIT %s")
Q_CANCEL_QUEUED = (f"UPDATE jobs SET status = 'cancelled', error = %s, finished_at = {_NOW}, "
                   f"updated_at = {_NOW} WHERE id = %s RETURNING {_COLS}")
Q_CANCEL_RUNNING = f"UPDATE jobs SET cancel_requested = TRUE, updated_at = {_NOW} WHERE id = %s RETURNING {_COLS}"
Q_DELETE = f"DELETE FROM jobs WHERE id = %s AND owner = %s RETURNING {_COLS}"
Q_DELETE_EVENTS = "DELETE FROM job_events WHERE job_id = %s"
Q_EXPIRE_DUE = (f"UPDATE jobs SET status = 'expired', updated_at = {_NOW} WHERE status = 'completed' "
                f"AND expires_at IS NOT NULL AND expires_at <= %s RETURNING {_COLS}")
Q_EVENTS = ("SELECT seq, ts, status, progress, stage FROM job_events WHERE job_id = %s AND seq > %s "
            "ORDER BY seq")
Q_REGISTER_WORKER = (f"INSERT INTO workers (id, info, seen_at) VALUES (%s, %s, {_NOW}) ON CONFLICT (id) "
                     "DO UPDATE SET info = excluded.info, seen_at = excluded.seen_at")
Q_REMOVE_WORKER = "DELETE FROM workers WHERE id = %s"
Q_LIVE_WORKERS = f"SELECT id, info, seen_at FROM workers WHERE seen_at >= {_NOW} - %s ORDER BY id"

_DELIVERY_COLS = ", ".join(DELIVERY_COLUMNS)
Q_INSERT_DELIVERY = ("INSERT INTO webhook_deliveries (id, job_id, owner, url, event_type, status, attempts, "
                     "next_attempt_at, created_at, updated_at) VALUES (%(id)s, %(job_id)s, %(owner)s, %(url)s, "
                     f"%(event_type)s, 'pending', 0, {_NOW}, {_NOW}, {_NOW})")
Q_ENSURE_SECRET = ("WITH ins AS (INSERT INTO webhook_secrets (owner, secret, created_at) "
                   f"VALUES (%(owner)s, %(secret)s, {_NOW}) ON CONFLICT (owner) DO NOTHING RETURNING secret) "
                   "SELECT secret FROM ins UNION ALL SELECT secret FROM webhook_secrets WHERE owner = %(owner)s "
                   "LIMIT 1")
Q_ROTATE_SECRET = (f"INSERT INTO webhook_secrets (owner, secret, created_at) VALUES (%(owner)s, %(secret)s, {_NOW}) "
                   "ON CONFLICT (owner) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at "
                   "RETURNING secret")
Q_SECRET = "SELECT secret FROM webhook_secrets WHERE owner = %s"
Q_CLAIM_DELIVERIES = f"""
WITH due AS (
    SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= {_NOW}
    ORDER BY next_attempt_at, id LIMIT %s FOR UPDATE SKIP LOCKED
)
UPDATE webhook_deliveries d SET next_attempt_at = {_NOW} + %s, updated_at = {_NOW}
FROM due WHERE d.id = due.id
RETURNING {", ".join(f"d.{c}" for c in DELIVERY_COLUMNS)}"""
# With a per-receiver cap: due rows page by page (locked, others' locked ones skipped), then the lease.
Q_DUE_DELIVERIES_PAGE = f"""
SELECT id, url, next_attempt_at FROM webhook_deliveries
WHERE status = 'pending' AND next_attempt_at <= {_NOW} AND (next_attempt_at, id) > (%s, %s)
ORDER BY next_attempt_at, id LIMIT %s FOR UPDATE SKIP LOCKED"""
Q_LEASE_DELIVERIES = f"""
UPDATE webhook_deliveries SET next_attempt_at = {_NOW} + %s, updated_at = {_NOW} WHERE id = ANY(%s)
RETURNING {_DELIVERY_COLS}"""
DUE_PAGE = 200
Q_DELIVERED = ("UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, last_error = NULL, "
               f"delivered_at = {_NOW}, updated_at = {_NOW} WHERE id = %s")
Q_DELIVERY_FAILED = ("UPDATE webhook_deliveries SET status = 'failed', attempts = attempts + 1, last_error = %s, "
                     f"updated_at = {_NOW} WHERE id = %s")
Q_DELIVERY_RETRY = ("UPDATE webhook_deliveries SET attempts = attempts + 1, last_error = %s, next_attempt_at = %s, "
                    f"updated_at = {_NOW} WHERE id = %s")
Q_DELIVERIES = f"SELECT {_DELIVERY_COLS} FROM webhook_deliveries WHERE job_id = %s ORDER BY created_at, id"
Q_RECENT_RUN_SECONDS = ("SELECT (outputs->>'run_seconds')::double precision FROM jobs WHERE engine = %s "
                        "AND status IN ('completed', 'expired') AND finished_at IS NOT NULL "
                        "AND jsonb_typeof(outputs->'run_seconds') = 'number' "
                        "ORDER BY finished_at DESC, id DESC LIMIT %s")


def _job_params(job: Job) -> list[Any]:
    values = []
    for col in COLUMNS:
        v = getattr(job, col)
        if col in JSON_COLUMNS:
            v = None if v is None else Jsonb(v)
        elif col == "status":
            v = v.value
        values.append(v)
    return values


def _json(value: dict[str, Any] | None) -> Jsonb | None:
    return None if value is None else Jsonb(value)


class PostgresJobStore(JobStore):
    def __init__(self, url: str, schema: str | None = None, max_connections: int = 10) -> None:
        params = conninfo_to_dict(url)
        if schema is not None:
            params["options"] = f"{params.get('options', '')} -c search_path={schema}".strip()
        self.conninfo = make_conninfo("", **params)
        self._listener: psycopg.Connection | None = None
        self._listen_lock = threading.Lock()
        self._lock = threading.Lock()
        self._pool: Any = None
        self._conn: psycopg.Connection | None = None
        if ConnectionPool is not None:
            self._pool = ConnectionPool(self.conninfo, min_size=1, max_size=max_connections,
                                        kwargs={"autocommit": True}, open=True, name="clipforge-jobs")
            try:
                self._pool.wait(timeout=10)
            except BaseException:
                self._pool.close()
                raise
        else:
            self._conn = psycopg.connect(self.conninfo, autocommit=True)
        self.applied_at_open = self.migrate()  # what opening applied (`clipforge migrate` reports it)

    # -- plumbing --------------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection]:
        """A connection inside a transaction, committed on exit, rolled back on an exception."""
        if self._pool is not None:
            with self._pool.connection() as conn, conn.transaction():
                yield conn
        else:
            assert self._conn is not None
            with self._lock, self._conn.transaction():
                yield self._conn

    def _read(self, sql: str, args: Any = ()) -> list[tuple[Any, ...]]:
        with self._tx() as c:
            return c.execute(sql, args).fetchall()

    def migrate(self) -> list[str]:
        with self._tx() as c:
            # One migrator at a time across every process; the others then find nothing pending.
            c.execute(Q_MIGRATE_LOCK)
            current, search_path = c.execute(Q_SEARCH_PATH_HEAD).fetchone()
            if current is None:  # the schema named first in search_path does not exist yet
                head = search_path.split(",")[0].strip().strip('"')
                c.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(head)))
            c.execute(Q_MIGRATIONS_TABLE)
            applied = {r[0] for r in c.execute(Q_APPLIED)}

            def run(version: int, name: str, script: str) -> None:
                c.execute(script)  # whole file at once: function bodies contain semicolons
                c.execute(Q_RECORD_MIGRATION, (version, name, time.time()))

            return migrate.apply_all("postgres", applied, run)

    @staticmethod
    def _event(c: psycopg.Connection, job_id: str, status: str, progress: int, stage: str | None) -> None:
        c.execute(Q_EVENT, (job_id, status, progress, stage))

    @staticmethod
    def _locked(c: psycopg.Connection, job_id: str, owner: str | None) -> Job:
        row = c.execute(Q_LOCK_ONE, (job_id,)).fetchone()
        if row is None or (owner is not None and row[1] != owner):
            raise NotFound(f"generation '{job_id}' not found")
        return row_to_job(row)

    # -- submit and read -------------------------------------------------------------------
    def create(self, job: Job, max_active: int = 0) -> tuple[Job, bool]:
        with self._tx() as c:
            earlier = self._check_quota(c, job, max_active) if max_active > 0 else None
            if earlier is None:
                if c.execute(Q_INSERT, _job_params(job)).fetchone() is not None:
                    self._event(c, job.id, job.status.value, job.progress, job.stage)
                    return job, True
                # The key was taken; ON CONFLICT waited for its transaction, so the row is visible now.
                earlier = row_to_job(c.execute(Q_BY_KEY, (job.owner, job.idempotency_key)).fetchone())
        if earlier.request_hash != job.request_hash:
            raise Conflict("Idempotency-Key was already used with a different request body")
        return earlier, False

    @staticmethod
    def _check_quota(c: psycopg.Connection, job: Job, max_active: int) -> Job | None:
        """Inside create's transaction: serialise the owner's creates (an advisory lock held until
        commit), then return the idempotent earlier job if any, else count and refuse past the quota.
        Each statement after the lock sees every create committed before it (READ COMMITTED)."""
        c.execute(Q_QUOTA_LOCK, (job.owner,))
        if job.idempotency_key:
            row = c.execute(Q_BY_KEY, (job.owner, job.idempotency_key)).fetchone()
            if row is not None:
                return row_to_job(row)
        (active,) = c.execute(Q_COUNT_ACTIVE, (job.owner,)).fetchone()
        if active >= max_active:
            raise QuotaExceeded(max_active, active)
        return None

    def find_by_idempotency_key(self, owner: str, key: str) -> Job | None:
        rows = self._read(Q_BY_KEY, (owner, key))
        return row_to_job(rows[0]) if rows else None

    def get(self, job_id: str, owner: str | None = None) -> Job:
        rows = self._read(f"{Q_SELECT} WHERE id = %s", (job_id,))
        if not rows or (owner is not None and rows[0][1] != owner):
            raise NotFound(f"generation '{job_id}' not found")
        return row_to_job(rows[0])

    def list(self, owner: str, limit: int = 20, after: str | None = None, order: str = "desc",
             status: JobStatus | None = None) -> list[Job]:
        anchor = self.get(after, owner) if after else None
        query, args = list_query(Q_SELECT, "%s", owner, limit, anchor, order, status)
        return [row_to_job(r) for r in self._read(query, args)]

    def queue_position(self, job: Job) -> int:
        return int(self._read(Q_QUEUE_POSITION, (job.engine, job.created_at, job.id))[0][0])

    # -- worker side -----------------------------------------------------------------------
    def claim(self, worker_id: str, engines: list[str], lease_seconds: float) -> Job | None:
        if not engines:
            return None
        self.reclaim_expired()
        with self._tx() as c:
            row = c.execute(Q_CLAIM, (list(engines), worker_id, lease_seconds)).fetchone()
            if row is None:
                return None
            job = row_to_job(row[:-1])
            self._event(c, job.id, job.status.value, job.progress, job.stage)
            if row[-1]:  # the first start, not a retry
                self._enqueue_webhook(c, job.id, job.owner, job.webhook, "running")
            return job

    def heartbeat(self, job_id: str, worker_id: str, lease_seconds: float,
                  progress: int | None = None, stage: str | None = None) -> LeaseState:
        with self._tx() as c:
            row = c.execute(Q_HEARTBEAT_LOCK, (job_id, worker_id)).fetchone()
            if row is None:
                return LeaseState.LOST
            old_progress, old_stage, cancel_requested = row
            new_progress = old_progress if progress is None else max(0, min(100, int(progress)))
            new_stage = old_stage if stage is None else stage
            c.execute(Q_HEARTBEAT, (lease_seconds, new_progress, new_stage, job_id))
            if (new_progress, new_stage) != (old_progress, old_stage):
                self._event(c, job_id, "running", new_progress, new_stage)
            return LeaseState.CANCEL if cancel_requested else LeaseState.OK

    def finish(self, job_id: str, worker_id: str, status: JobStatus,
               outputs: dict[str, Any] | None = None, error: dict[str, Any] | None = None,
               expires_at: float | None = None) -> bool:
        with self._tx() as c:
            row = c.execute(Q_FINISH, (status.value, _json(outputs), _json(error), expires_at,
                                       status == JobStatus.COMPLETED, job_id, worker_id)).fetchone()
            if row is None:
                return False
            self._event(c, job_id, status.value, row[0], None)
            self._enqueue_webhook(c, job_id, row[1], row[2], status.value)
            return True

    def reclaim_expired(self) -> int:
        with self._tx() as c:
            rows = c.execute(Q_EXPIRED_LEASES).fetchall()
            for job_id, attempts, max_attempts, cancel_requested, progress, owner, webhook in rows:
                if cancel_requested:
                    c.execute(Q_END_LOST, ("cancelled", Jsonb(cancelled_error()), job_id))
                    self._event(c, job_id, "cancelled", progress, None)
                    self._enqueue_webhook(c, job_id, owner, webhook, "cancelled")
                elif attempts >= max_attempts:
                    c.execute(Q_END_LOST, ("failed", Jsonb(lost_worker_error(attempts)), job_id))
                    self._event(c, job_id, "failed", progress, None)
                    self._enqueue_webhook(c, job_id, owner, webhook, "failed")
                else:
                    c.execute(Q_REQUEUE, (job_id,))  # the trigger wakes listening workers
                    self._event(c, job_id, "queued", 0, None)
            return len(rows)

    def fail_overdue_queued(self, max_wait_seconds: float) -> list[Job]:
        jobs = []
        with self._tx() as c:
            overdue = c.execute(Q_OVERDUE_QUEUED, (max_wait_seconds,)).fetchall()
            for job_id, engine, progress, owner, webhook in overdue:
                error = Jsonb(queue_timeout_error(max_wait_seconds, engine))
                row = c.execute(Q_FAIL_QUEUED, (error, job_id)).fetchone()
                if row is None:
                    continue
                jobs.append(row_to_job(row))
                self._event(c, job_id, "failed", progress, None)
                self._enqueue_webhook(c, job_id, owner, webhook, "failed")
        return jobs

    def save_checkpoint(self, job_id: str, worker_id: str, checkpoint: dict[str, Any] | None,
                        engine: str | None = None) -> bool:
        with self._tx() as c:
            cur = c.execute(Q_CHECKPOINT, (checkpoint is None, Jsonb(checkpoint or {}), engine, job_id, worker_id))
            return cur.rowcount == 1

    def release(self, job_id: str, worker_id: str) -> bool:
        with self._tx() as c:
            row = c.execute(Q_RELEASE_LOCK, (job_id, worker_id)).fetchone()
            if row is None:
                return False
            cancel_requested, progress, owner, webhook = row
            if cancel_requested:
                c.execute(Q_END_LOST, ("cancelled", Jsonb(cancelled_error()), job_id))
                self._event(c, job_id, "cancelled", progress, None)
                self._enqueue_webhook(c, job_id, owner, webhook, "cancelled")
            else:
                c.execute(Q_RELEASE, (job_id,))  # the trigger wakes listening workers
                self._event(c, job_id, "queued", 0, None)
            return True

    def counts(self) -> dict[tuple[str, str], int]:
        return {(m, s): int(n) for m, s, n in self._read(Q_COUNTS)}

    def active_by_engine(self) -> dict[tuple[str, str], int]:
        return {(e, s): int(n) for e, s, n in self._read(Q_ACTIVE_BY_ENGINE)}

    def finished_since(self, after: float, after_id: str = "", limit: int = 1000) -> list[Job]:
        return [row_to_job(r) for r in self._read(Q_FINISHED_SINCE, (after, after_id, limit))]

    def wait_for_work(self, timeout: float) -> None:
        with self._listen_lock:
            if self._listener is None or self._listener.closed:
                # Start listening and return at once: a job queued before LISTEN took effect sent
                # its notification to nobody, so the caller must look at the queue once more.
                self._listener = psycopg.connect(self.conninfo, autocommit=True)
                self._listener.execute(f"LISTEN {CHANNEL}")
                return
            try:
                for _ in self._listener.notifies(timeout=max(0.0, timeout), stop_after=1):
                    pass
            except psycopg.OperationalError:  # connection dropped: reconnect on the next call
                self._listener.close()
                time.sleep(min(timeout, 0.2))

    # -- owner actions ---------------------------------------------------------------------
    def cancel(self, job_id: str, owner: str) -> Job:
        with self._tx() as c:
            job = self._locked(c, job_id, owner)
            if job.terminal:
                raise Conflict(f"generation '{job_id}' already finished with status '{job.status.value}'; "
                               "only queued or running generations can be cancelled")
            if job.status == JobStatus.QUEUED:
                row = c.execute(Q_CANCEL_QUEUED, (Jsonb(cancelled_error()), job_id)).fetchone()
                self._event(c, job_id, "cancelled", job.progress, None)
                self._enqueue_webhook(c, job_id, job.owner, job.webhook, "cancelled")
            else:
                row = c.execute(Q_CANCEL_RUNNING, (job_id,)).fetchone()
            return row_to_job(row)

    def delete(self, job_id: str, owner: str) -> Job:
        with self._tx() as c:
            row = c.execute(Q_DELETE, (job_id, owner)).fetchone()
            if row is None:
                raise NotFound(f"generation '{job_id}' not found")
            c.execute(Q_DELETE_EVENTS, (job_id,))
            return row_to_job(row)

    def expire_due(self, now: float) -> list[Job]:
        with self._tx() as c:
            jobs = [row_to_job(r) for r in c.execute(Q_EXPIRE_DUE, (now,)).fetchall()]
            for job in jobs:
                self._event(c, job.id, "expired", job.progress, None)
            return jobs

    def events(self, job_id: str, after_seq: int = 0) -> list[dict[str, Any]]:
        rows = self._read(Q_EVENTS, (job_id, after_seq))
        return [dict(zip(("seq", "ts", "status", "progress", "stage"), r, strict=True)) for r in rows]

    # -- webhooks --------------------------------------------------------------------------
    @staticmethod
    def _enqueue_webhook(c: psycopg.Connection, job_id: str, owner: str, webhook: dict[str, Any] | None,
                         status: str) -> None:
        """Inside the transaction that moved the job to `status`: the outbox row, when warranted."""
        delivery = delivery_for(job_id, owner, webhook, status)
        if delivery is not None:
            c.execute(Q_INSERT_DELIVERY, {k: delivery[k] for k in ("id", "job_id", "owner", "url", "event_type")})

    def webhook_secret(self, owner: str, rotate: bool = False) -> str:
        with self._tx() as c:
            row = c.execute(Q_ROTATE_SECRET if rotate else Q_ENSURE_SECRET,
                            {"owner": owner, "secret": new_secret()}).fetchone()
            if row is None:  # a concurrent first use inserted it after this statement's snapshot
                row = c.execute(Q_SECRET, (owner,)).fetchone()
            return row[0]

    def claim_deliveries(self, limit: int, lease_seconds: float, *, per_origin: int | None = None,
                         busy: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        if per_origin is None:
            with self._tx() as c:
                rows = c.execute(Q_CLAIM_DELIVERIES, (limit, lease_seconds)).fetchall()
            return sorted((row_to_delivery(r) for r in rows), key=lambda d: d["created_at"])
        cap = ReceiverCap(per_origin, busy)
        with self._tx() as c:
            taken: list[str] = []
            after: tuple[float, str] = (float("-inf"), "")
            while len(taken) < limit:  # past deliveries to receivers at their cap (left untouched)
                page = c.execute(Q_DUE_DELIVERIES_PAGE, (*after, DUE_PAGE)).fetchall()
                for delivery_id, url, _ in page:
                    if len(taken) < limit and cap.admit(url):
                        taken.append(delivery_id)
                if len(page) < DUE_PAGE:
                    break
                after = (page[-1][2], page[-1][0])
            rows = c.execute(Q_LEASE_DELIVERIES, (lease_seconds, taken)).fetchall() if taken else []
        order = {delivery_id: i for i, delivery_id in enumerate(taken)}
        return sorted((row_to_delivery(r) for r in rows), key=lambda d: order[d["id"]])

    def finish_delivery(self, delivery_id: str, delivered: bool, error: str | None = None,
                        retry_at: float | None = None) -> None:
        with self._tx() as c:
            if delivered:
                c.execute(Q_DELIVERED, (delivery_id,))
            elif retry_at is None:
                c.execute(Q_DELIVERY_FAILED, (error, delivery_id))
            else:
                c.execute(Q_DELIVERY_RETRY, (error, retry_at, delivery_id))

    def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        return [row_to_delivery(r) for r in self._read(Q_DELIVERIES, (job_id,))]

    def recent_run_seconds(self, engine: str, limit: int = 20) -> list[float]:
        return [float(r[0]) for r in self._read(Q_RECENT_RUN_SECONDS, (engine, limit))]

    # -- workers ---------------------------------------------------------------------------
    def register_worker(self, worker_id: str, info: dict[str, Any]) -> None:
        with self._tx() as c:
            c.execute(Q_REGISTER_WORKER, (worker_id, Jsonb(info)))

    def remove_worker(self, worker_id: str) -> None:
        with self._tx() as c:
            c.execute(Q_REMOVE_WORKER, (worker_id,))

    def live_workers(self, within_seconds: float) -> list[dict[str, Any]]:
        rows = self._read(Q_LIVE_WORKERS, (within_seconds,))
        return [{"id": r[0], "info": r[1], "seen_at": r[2]} for r in rows]

    def close(self) -> None:
        with self._listen_lock:
            if self._listener is not None:
                self._listener.close()
        if self._pool is not None:
            self._pool.close()
        elif self._conn is not None:
            self._conn.close()
