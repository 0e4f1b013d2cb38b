"""SQLite job store (WAL): the embedded default. Safe across processes on one machine."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clipforge.core.errors import Conflict, NotFound, QuotaExceeded
from clipforge.core.job import Job, JobStatus
from clipforge.jobs import migrate
from clipforge.jobs.base import JobStore, LeaseState
from clipforge.jobs.rows import (
    CANCELLED_ERROR,
    COLUMNS,
    cancelled_error,
    job_to_row,
    list_query,
    lost_worker_error,
    queue_timeout_error,
    row_to_job,
)
from clipforge.jobs.webhooks import (
    DELIVERY_COLUMNS,
    ReceiverCap,
    delivery_for,
    delivery_row,
    new_secret,
    row_to_delivery,
)

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM jobs"
_DELIVERY_COLS = ", ".join(DELIVERY_COLUMNS)
_COUNT_ACTIVE = "SELECT COUNT(*) FROM jobs WHERE owner = ? AND status IN ('queued', 'running')"


class SQLiteJobStore(JobStore):
    nonblocking_reads = True  # reads go through a connection of their own, which no writer holds (WAL)

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._enable_wal()
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self.applied_at_open = self.migrate()  # what opening applied (`clipforge migrate` reports it)
        self._reader, self._read_lock = self._open_reader()

    def _open_reader(self) -> tuple[sqlite3.Connection, threading.RLock]:
        """The connection reads use. In WAL mode a reader never waits for a writer, so a read is never
        stuck behind one of this process's writes that waits for another process's write lock."""
        if self.path == ":memory:":  # one private database: share the writer's connection
            return self._conn, self._lock
        reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        reader.execute("PRAGMA busy_timeout=30000")
        return reader, threading.RLock()

    def _enable_wal(self, wait_seconds: float = 30.0) -> None:
        """Switch to WAL, retrying: the switch ignores busy_timeout, so processes opening a new
        database at once (`serve` starting its workers) would otherwise fail with 'database is locked'."""
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    # -- plumbing --------------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the database's write lock up front."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._read_lock:
            return self._reader.execute(sql, args).fetchall()

    def migrate(self) -> list[str]:
        with self._tx() as c:
            c.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                      "name TEXT NOT NULL, applied_at REAL NOT NULL)")
            applied = {r[0] for r in c.execute("SELECT version FROM schema_migrations")}

            def run(version: int, name: str, sql: str) -> None:
                for stmt in migrate.split_statements(sql):
                    c.execute(stmt)
                c.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, time.time()))

            return migrate.apply_all("sqlite", applied, run)

    @staticmethod
    def _event(c: sqlite3.Connection, job_id: str, status: str, progress: int, stage: str | None) -> None:
        c.execute("INSERT INTO job_events (job_id, ts, status, progress, stage) VALUES (?, ?, ?, ?, ?)",
                  (job_id, time.time(), status, progress, stage))

    @staticmethod
    def _enqueue_webhook(c: sqlite3.Connection, job_id: str, status: str) -> None:
        """Inside the transaction that moved the job to `status`: the outbox row, when warranted."""
        row = c.execute("SELECT owner, webhook FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None or row[1] is None:
            return
        delivery = delivery_for(job_id, row[0], json.loads(row[1]), status)
        if delivery is not None:
            c.execute(f"INSERT INTO webhook_deliveries ({_DELIVERY_COLS}) "
                      f"VALUES ({', '.join('?' * len(DELIVERY_COLUMNS))})", delivery_row(delivery))

    @staticmethod
    def _one(c: sqlite3.Connection, job_id: str) -> Job | None:
        row = c.execute(f"{_SELECT} WHERE id = ?", (job_id,)).fetchone()
        return row_to_job(row) if row else None

    # -- submit and read -------------------------------------------------------------------
    def create(self, job: Job, max_active: int = 0) -> tuple[Job, bool]:
        with self._tx() as c:  # BEGIN IMMEDIATE: one writer at a time, across processes too
            if job.idempotency_key:
                row = c.execute(f"{_SELECT} WHERE owner = ? AND idempotency_key = ?",
                                (job.owner, job.idempotency_key)).fetchone()
                if row:
                    earlier = row_to_job(row)
                    if earlier.request_hash != job.request_hash:
                        raise Conflict("Idempotency-Key was already used with a different request body")
                    return earlier, False
            if max_active > 0:
                (active,) = c.execute(_COUNT_ACTIVE, (job.owner,)).fetchone()
                if active >= max_active:
                    raise QuotaExceeded(max_active, active)
            c.execute(f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                      job_to_row(job))
            self._event(c, job.id, job.status.value, job.progress, job.stage)
        return job, True

    def find_by_idempotency_key(self, owner: str, key: str) -> Job | None:
        rows = self._read(f"{_SELECT} WHERE owner = ? AND idempotency_key = ?", (owner, key))
        return row_to_job(rows[0]) if rows else None

    def get(self, job_id: str, owner: str | None = None) -> Job:
        rows = self._read(f"{_SELECT} WHERE id = ?", (job_id,))
        if not rows or (owner is not None and rows[0][1] != owner):
            raise NotFound(f"generation '{job_id}' not found")
        return row_to_job(rows[0])

    def list(self, owner: str, limit: int = 20, after: str | None = None, order: str = "desc",
             status: JobStatus | None = None) -> list[Job]:
        anchor = self.get(after, owner) if after else None
        sql, args = list_query(_SELECT, "?", owner, limit, anchor, order, status)
        return [row_to_job(r) for r in self._read(sql, tuple(args))]

    def queue_position(self, job: Job) -> int:
        (n,) = self._read("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND engine = ? AND "
                          "(created_at, id) < (?, ?)", (job.engine, job.created_at, job.id))[0]
        return int(n)

    # -- worker side -----------------------------------------------------------------------
    def claim(self, worker_id: str, engines: list[str], lease_seconds: float) -> Job | None:
        if not engines:
            return None
        self.reclaim_expired()
        now = time.time()
        marks = ", ".join("?" * len(engines))
        with self._tx() as c:
            row = c.execute(f"SELECT id, started_at FROM jobs WHERE status = 'queued' AND engine IN ({marks}) "
                            "ORDER BY created_at, id LIMIT 1", tuple(engines)).fetchone()
            if row is None:
                return None
            c.execute("UPDATE jobs SET status = 'running', worker_id = ?, lease_expires_at = ?, "
                      "attempts = attempts + 1, started_at = COALESCE(started_at, ?), updated_at = ?, "
                      "stage = 'starting' WHERE id = ?", (worker_id, now + lease_seconds, now, now, row[0]))
            job = self._one(c, row[0])
            assert job is not None
            self._event(c, job.id, job.status.value, job.progress, job.stage)
            if row[1] is None:  # the first start, not a retry
                self._enqueue_webhook(c, job.id, "running")
            return job

    def heartbeat(self, job_id: str, worker_id: str, lease_seconds: float,
                  progress: int | None = None, stage: str | None = None) -> LeaseState:
        now = time.time()
        with self._tx() as c:
            job = self._one(c, job_id)
            if job is None or job.status != JobStatus.RUNNING or job.worker_id != worker_id:
                return LeaseState.LOST
            new_progress = job.progress if progress is None else max(0, min(100, int(progress)))
            new_stage = job.stage if stage is None else stage
            c.execute("UPDATE jobs SET lease_expires_at = ?, progress = ?, stage = ?, updated_at = ? "
                      "WHERE id = ?", (now + lease_seconds, new_progress, new_stage, now, job_id))
            if (new_progress, new_stage) != (job.progress, job.stage):
                self._event(c, job_id, job.status.value, new_progress, new_stage)
            return LeaseState.CANCEL if job.cancel_requested else LeaseState.OK

    def finish(self, job_id: str, worker_id: str, status: JobStatus,
               outputs: dict[str, Any] | None = None, error: dict[str, Any] | None = None,
               expires_at: float | None = None) -> bool:
        now = time.time()
        progress_sql = "100" if status == JobStatus.COMPLETED else "progress"
        with self._tx() as c:
            cur = c.execute(
                f"UPDATE jobs SET status = ?, outputs = ?, error = ?, expires_at = ?, finished_at = ?, "
                f"updated_at = ?, lease_expires_at = NULL, progress = {progress_sql}, stage = NULL "
                "WHERE id = ? AND worker_id = ? AND status = 'running'",
                (status.value, json.dumps(outputs) if outputs is not None else None,
                 json.dumps(error) if error is not None else None, expires_at, now, now, job_id, worker_id))
            if cur.rowcount != 1:
                return False
            job = self._one(c, job_id)
            assert job is not None
            self._event(c, job_id, status.value, job.progress, None)
            self._enqueue_webhook(c, job_id, status.value)
            return True

    def save_checkpoint(self, job_id: str, worker_id: str, checkpoint: dict[str, Any] | None,
                        engine: str | None = None) -> bool:
        with self._tx() as c:
            job = self._one(c, job_id)
            if job is None or job.status != JobStatus.RUNNING or job.worker_id != worker_id:
                return False
            params = {k: v for k, v in job.params.items() if k != "checkpoint"}
            if checkpoint is not None:
                params["checkpoint"] = checkpoint
            c.execute("UPDATE jobs SET params = ?, engine = ?, updated_at = ? WHERE id = ?",
                      (json.dumps(params), engine or job.engine, time.time(), job_id))
            return True

    def release(self, job_id: str, worker_id: str) -> bool:
        now = time.time()
        with self._tx() as c:
            job = self._one(c, job_id)
            if job is None or job.status != JobStatus.RUNNING or job.worker_id != worker_id:
                return False
            if job.cancel_requested:
                c.execute("UPDATE jobs SET status = 'cancelled', worker_id = NULL, lease_expires_at = NULL, "
                          "stage = NULL, finished_at = ?, updated_at = ?, error = ? WHERE id = ?",
                          (now, now, json.dumps(CANCELLED_ERROR), job_id))
                self._event(c, job_id, "cancelled", job.progress, None)
                self._enqueue_webhook(c, job_id, "cancelled")
            else:
                c.execute("UPDATE jobs SET status = 'queued', worker_id = NULL, lease_expires_at = NULL, "
                          "progress = 0, stage = NULL, attempts = MAX(attempts - 1, 0), updated_at = ? "
                          "WHERE id = ?", (now, job_id))
                self._event(c, job_id, "queued", 0, None)
            return True

    def counts(self) -> dict[tuple[str, str], int]:
        rows = self._read("SELECT model, status, COUNT(*) FROM jobs GROUP BY model, status")
        return {(m, s): int(n) for m, s, n in rows}

    def active_by_engine(self) -> dict[tuple[str, str], int]:
        rows = self._read("SELECT engine, status, COUNT(*) FROM jobs WHERE status IN ('queued', 'running') "
                          "GROUP BY engine, status")
        return {(e, s): int(n) for e, s, n in rows}

    def finished_since(self, after: float, after_id: str = "", limit: int = 1000) -> list[Job]:
        rows = self._read(f"{_SELECT} WHERE finished_at IS NOT NULL AND (finished_at, id) > (?, ?) "
                          "ORDER BY finished_at, id LIMIT ?", (after, after_id, limit))
        return [row_to_job(r) for r in rows]

    def reclaim_expired(self) -> int:
        now = time.time()
        with self._tx() as c:
            rows = c.execute("SELECT id, attempts, max_attempts, cancel_requested, progress FROM jobs "
                             "WHERE status = 'running' AND lease_expires_at < ?", (now,)).fetchall()
            for job_id, attempts, max_attempts, cancel_requested, progress in rows:
                if cancel_requested or attempts >= max_attempts:
                    # Ended as `finish` ends a job: no lease, no stage, progress kept.
                    status, error = (("cancelled", cancelled_error())
                                     if cancel_requested else ("failed", lost_worker_error(attempts)))
                    c.execute("UPDATE jobs SET status = ?, worker_id = NULL, lease_expires_at = NULL, stage = NULL, "
                              "finished_at = ?, updated_at = ?, error = ? WHERE id = ?",
                              (status, now, now, json.dumps(error), job_id))
                    self._event(c, job_id, status, progress, None)
                    self._enqueue_webhook(c, job_id, status)
                else:
                    c.execute("UPDATE jobs SET status = 'queued', worker_id = NULL, lease_expires_at = NULL, "
                              "progress = 0, stage = NULL, updated_at = ? WHERE id = ?", (now, job_id))
                    self._event(c, job_id, "queued", 0, None)
            return len(rows)

    def fail_overdue_queued(self, max_wait_seconds: float) -> list[Job]:
        now = time.time()
        with self._tx() as c:  # BEGIN IMMEDIATE: no claim runs between the select and the updates
            rows = c.execute(f"{_SELECT} WHERE status = 'queued' AND updated_at < ? ORDER BY created_at, id",
                             (now - max_wait_seconds,)).fetchall()
            jobs = [row_to_job(r) for r in rows]
            for job in jobs:
                job.status, job.error = JobStatus.FAILED, queue_timeout_error(max_wait_seconds, job.engine)
                job.finished_at = job.updated_at = now
                job.stage = None
                c.execute("UPDATE jobs SET status = 'failed', error = ?, stage = NULL, finished_at = ?, "
                          "updated_at = ? WHERE id = ? AND status = 'queued'",
                          (json.dumps(job.error), now, now, job.id))
                self._event(c, job.id, "failed", job.progress, None)
                self._enqueue_webhook(c, job.id, "failed")
            return jobs

    # -- owner actions ---------------------------------------------------------------------
    def cancel(self, job_id: str, owner: str) -> Job:
        now = time.time()
        with self._tx() as c:
            job = self._one(c, job_id)
            if job is None or job.owner != owner:
                raise NotFound(f"generation '{job_id}' not found")
            if job.terminal:
                raise Conflict(f"generation '{job_id}' already finished with status '{job.status.value}'; "
                               "only queued or running generations can be cancelled")
            if job.status == JobStatus.QUEUED:
                c.execute("UPDATE jobs SET status = 'cancelled', finished_at = ?, updated_at = ?, error = ? "
                          "WHERE id = ?", (now, now, json.dumps(CANCELLED_ERROR), job_id))
                self._event(c, job_id, "cancelled", job.progress, None)
                self._enqueue_webhook(c, job_id, "cancelled")
            else:
                c.execute("UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?", (now, job_id))
            return self._one(c, job_id)  # type: ignore[return-value]

    def delete(self, job_id: str, owner: str) -> Job:
        with self._tx() as c:
            job = self._one(c, job_id)
            if job is None or job.owner != owner:
                raise NotFound(f"generation '{job_id}' not found")
            c.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            c.execute("DELETE FROM job_events WHERE job_id = ?", (job_id,))
            return job

    def expire_due(self, now: float) -> list[Job]:
        with self._tx() as c:
            rows = c.execute(f"{_SELECT} WHERE status = 'completed' AND expires_at IS NOT NULL "
                             "AND expires_at <= ?", (now,)).fetchall()
            jobs = [row_to_job(r) for r in rows]
            for job in jobs:
                c.execute("UPDATE jobs SET status = 'expired', updated_at = ? WHERE id = ?", (now, job.id))
                job.status, job.updated_at = JobStatus.EXPIRED, now  # as memory does: the state after
                self._event(c, job.id, "expired", job.progress, None)
            return jobs

    def events(self, job_id: str, after_seq: int = 0) -> list[dict[str, Any]]:
        rows = self._read("SELECT seq, ts, status, progress, stage FROM job_events WHERE job_id = ? "
                          "AND seq > ? ORDER BY seq", (job_id, after_seq))
        return [dict(zip(("seq", "ts", "status", "progress", "stage"), r, strict=True)) for r in rows]

    # -- webhooks --------------------------------------------------------------------------
    def webhook_secret(self, owner: str, rotate: bool = False) -> str:
        conflict = ("DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at" if rotate
                    else "DO NOTHING")
        with self._tx() as c:
            c.execute(f"INSERT INTO webhook_secrets (owner, secret, created_at) VALUES (?, ?, ?) "
                      f"ON CONFLICT (owner) {conflict}", (owner, new_secret(), time.time()))
            return c.execute("SELECT secret FROM webhook_secrets WHERE owner = ?", (owner,)).fetchone()[0]

    def claim_deliveries(self, limit: int, lease_seconds: float, *, per_origin: int | None = None,
                         busy: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
        now = time.time()
        due_sql = "FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ?"
        if limit <= 0 or not self._read(f"SELECT 1 {due_sql} LIMIT 1", (now,)):
            return []  # the common case answers from a read, without taking the write lock
        cap = ReceiverCap(per_origin, busy)
        with self._tx() as c:
            out: list[dict[str, Any]] = []
            # oldest due first, read lazily past deliveries to receivers at their cap (left untouched)
            sql, args = f"SELECT {_DELIVERY_COLS} {due_sql} ORDER BY next_attempt_at, id", (now,)
            if per_origin is None:
                sql, args = sql + " LIMIT ?", (now, limit)
            rows = c.execute(sql, args)
            try:
                for row in rows:
                    d = row_to_delivery(row)
                    if cap.admit(d["url"]):
                        out.append(d)
                        if len(out) >= limit:
                            break
            finally:
                rows.close()
            for d in out:
                d["next_attempt_at"], d["updated_at"] = now + lease_seconds, now
                c.execute("UPDATE webhook_deliveries SET next_attempt_at = ?, updated_at = ? WHERE id = ?",
                          (d["next_attempt_at"], now, d["id"]))
            return out

    def finish_delivery(self, delivery_id: str, delivered: bool, error: str | None = None,
                        retry_at: float | None = None) -> None:
        now = time.time()
        with self._tx() as c:
            if delivered:
                c.execute("UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, "
                          "last_error = NULL, delivered_at = ?, updated_at = ? WHERE id = ?", (now, now, delivery_id))
            elif retry_at is None:
                c.execute("UPDATE webhook_deliveries SET status = 'failed', attempts = attempts + 1, "
                          "last_error = ?, updated_at = ? WHERE id = ?", (error, now, delivery_id))
            else:
                c.execute("UPDATE webhook_deliveries SET attempts = attempts + 1, last_error = ?, "
                          "next_attempt_at = ?, updated_at = ? WHERE id = ?", (error, retry_at, now, delivery_id))

    def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        rows = self._read(f"SELECT {_DELIVERY_COLS} FROM webhook_deliveries WHERE job_id = ? "
                          "ORDER BY created_at, id", (job_id,))
        return [row_to_delivery(r) for r in rows]

    def recent_run_seconds(self, engine: str, limit: int = 20) -> list[float]:
        rows = self._read("SELECT json_extract(outputs, '$.run_seconds') FROM jobs WHERE engine = ? "
                          "AND status IN ('completed', 'expired') AND finished_at IS NOT NULL "
                          "AND json_type(outputs, '$.run_seconds') IN ('integer', 'real') "
                          "ORDER BY finished_at DESC, id DESC LIMIT ?", (engine, limit))
        return [float(r[0]) for r in rows]

    # -- workers ---------------------------------------------------------------------------
    def register_worker(self, worker_id: str, info: dict[str, Any]) -> None:
        with self._tx() as c:
            c.execute("INSERT INTO workers (id, info, seen_at) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE "
                      "SET info = excluded.info, seen_at = excluded.seen_at",
                      (worker_id, json.dumps(info), time.time()))

    def remove_worker(self, worker_id: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM workers WHERE id = ?", (worker_id,))

    def live_workers(self, within_seconds: float) -> list[dict[str, Any]]:
        rows = self._read("SELECT id, info, seen_at FROM workers WHERE seen_at >= ?",
                          (time.time() - within_seconds,))
        return [{"id": r[0], "info": json.loads(r[1]), "seen_at": r[2]} for r in rows]

    def close(self) -> None:
        with self._read_lock:
            self._reader.close()
        with self._lock:
            self._conn.close()
