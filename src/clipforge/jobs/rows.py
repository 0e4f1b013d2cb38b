"""Mapping between `Job` objects and database rows (shared by the SQL stores)."""

from __future__ import annotations

import json
from typing import Any

from clipforge.core.job import Job, JobStatus

COLUMNS = (
    "id", "owner", "model", "engine", "status", "progress", "stage", "params", "outputs", "error",
    "attempts", "max_attempts", "worker_id", "lease_expires_at", "cancel_requested", "media_token",
    "idempotency_key", "request_hash", "webhook", "remixed_from", "created_at", "started_at",
    "finished_at", "updated_at", "expires_at",
)
JSON_COLUMNS = ("params", "outputs", "error", "webhook")


def job_to_row(job: Job) -> tuple[Any, ...]:
    values = []
    for col in COLUMNS:
        v = getattr(job, col)
        if col in JSON_COLUMNS:
            v = None if v is None else json.dumps(v)
        elif col == "status":
            v = v.value
        elif col == "cancel_requested":
            v = int(v)
        values.append(v)
    return tuple(values)


def row_to_job(row: Any) -> Job:
    d = dict(zip(COLUMNS, row, strict=True))
    for col in JSON_COLUMNS:
        if isinstance(d[col], str):
            d[col] = json.loads(d[col])
    d["status"] = JobStatus(d["status"])
    d["cancel_requested"] = bool(d["cancel_requested"])
    return Job(**d)


CANCELLED_ERROR = {"name": "Cancelled", "message": "Cancelled by request"}


def cancelled_error() -> dict[str, str]:
    """The error recorded on a cancelled job (a fresh dict: callers may keep it)."""
    return dict(CANCELLED_ERROR)


def lost_worker_error(attempts: int) -> dict[str, str]:
    from clipforge.jobs.base import LOST_WORKER_MESSAGE

    return {"name": "WorkerLost", "message": LOST_WORKER_MESSAGE.format(n=attempts)}


QUEUE_TIMEOUT_MESSAGE = (
    "No worker started this generation within {limit} s of it being queued, so it was failed and no longer "
    "counts against your active jobs. No worker serving engine '{engine}' took it: check that one is running "
    "and ready (or that the autoscaler starts one), then submit again."
)


def queue_timeout_error(limit_seconds: float, engine: str) -> dict[str, str]:
    """The error recorded on a job no worker claimed within the queue-wait limit."""
    return {"name": "QueueTimeout", "code": "queue_timeout",
            "message": QUEUE_TIMEOUT_MESSAGE.format(limit=f"{limit_seconds:g}", engine=engine)}


def list_query(select: str, mark: str, owner: str, limit: int, anchor: Job | None, order: str,
               status: JobStatus | None) -> tuple[str, list[Any]]:
    """The SQL and arguments of `JobStore.list` (owner's jobs by creation time, after `anchor`), with
    `mark` the driver's placeholder (`?` or `%s`)."""
    op, direction = ("<", "DESC") if order == "desc" else (">", "ASC")
    sql, args = f"{select} WHERE owner = {mark}", [owner]
    if status is not None:
        sql += f" AND status = {mark}"
        args.append(status.value)
    if anchor is not None:
        sql += f" AND (created_at, id) {op} ({mark}, {mark})"
        args += [anchor.created_at, anchor.id]
    sql += f" ORDER BY created_at {direction}, id {direction} LIMIT {mark}"
    args.append(limit)
    return sql, args
