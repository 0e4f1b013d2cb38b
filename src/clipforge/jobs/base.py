"""The job store interface every backend implements, and the factory that picks one."""

from __future__ import annotations

import abc
import enum
import re
import time
from collections.abc import Mapping
from typing import Any

from clipforge.core.errors import ConfigError
from clipforge.core.job import Job, JobStatus

LOST_WORKER_MESSAGE = (
    "The worker running this generation stopped responding {n} times; giving up. "
    "Check the worker logs (out of memory is the usual cause) and submit again."
)


class LeaseState(enum.StrEnum):
    OK = "ok"            # keep going
    CANCEL = "cancel"    # the owner asked to cancel: stop at the next step
    LOST = "lost"        # the lease expired and another worker may hold the job: stop, write nothing


class JobStore(abc.ABC):
    """Durable queue and record of generations.

    The contract every backend keeps (tests/jobs/test_store_contract.py runs it against each):

    - Owners are isolated: `get`, `list`, `cancel` and `delete` with another owner's id raise
      NotFound, never Conflict, so an id's existence does not leak.
    - `create` is idempotent per `(owner, idempotency_key)`: the same key and request hash return the
      earlier job with `created=False`, a different hash raises Conflict, concurrent creators with one
      key make one job.
    - `create(job, max_active=N)` enforces the owner's quota of queued + running jobs atomically:
      concurrent creators (threads or processes) never get more than N active jobs accepted.
    - Claims are exclusive: a queued job goes to exactly one claimer, oldest first (`created_at`,
      then id), and only to a claimer that listed the job's engine. A claim holds a lease that the
      worker renews with `heartbeat`; a job whose lease expires goes back to the queue with its
      attempt counted (up to `max_attempts`, then it fails with the WorkerLost message).
    - Queue waits are bounded by the caller: `fail_overdue_queued(limit)` fails the jobs that have been
      queued longer than `limit` seconds (since they last entered the queue: creation, a requeue or a
      hand-back) with the QueueTimeout error, atomically with respect to `claim`: a job is either
      claimed or failed, never both.
    - Cancel is a flag for running jobs (`heartbeat` answers CANCEL; the worker ends the job) and
      immediate for queued ones; cancelling a finished job raises Conflict.
    - `heartbeat` answers LOST and `finish` returns False to a worker that no longer holds the job.
    - Every status or progress change appends an event (`events`), numbered by a store-wide `seq`.
    - Webhooks: a transition that `jobs.webhooks.delivery_for` says warrants a delivery (finish,
      cancel of a queued job, a reclaim or release that ends a job, a queue timeout, and the first claim for
      "started") enqueues a pending delivery in the same transaction. `claim_deliveries` hands a due
      delivery to one dispatcher at a time (its next attempt is pushed forward by the lease);
      `finish_delivery` records the outcome.
    - Stores are safe to share between threads; the SQL stores are also safe across processes.
    - `nonblocking_reads`: True when the read methods (`get`, `list`, `queue_position`, `events`,
      `find_by_idempotency_key`, `live_workers`, `recent_run_seconds`) never wait on a lock, a
      writer or the network, so an event loop may call them inline (api/async_store.py).
    """

    nonblocking_reads = False

    # -- submit and read -------------------------------------------------------------------
    @abc.abstractmethod
    def create(self, job: Job, max_active: int = 0) -> tuple[Job, bool]:
        """Insert a job. With an idempotency key already used by the owner, return the earlier
        job and False (raise Conflict if its request hash differs), whatever the quota.
        With `max_active` > 0, raise QuotaExceeded instead of inserting when the owner already has
        that many jobs queued or running; the count and the insert are one atomic step."""

    @abc.abstractmethod
    def find_by_idempotency_key(self, owner: str, key: str) -> Job | None:
        """The owner's job created with this Idempotency-Key, if any (a cheap check before new work)."""

    @abc.abstractmethod
    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job; NotFound if unknown or owned by someone else."""

    @abc.abstractmethod
    def list(self, owner: str, limit: int = 20, after: str | None = None, order: str = "desc",
             status: JobStatus | None = None) -> list[Job]:
        """The owner's jobs by creation time, starting after the job id `after`."""

    @abc.abstractmethod
    def queue_position(self, job: Job) -> int:
        """How many queued jobs for the same engine are ahead of this one."""

    # -- worker side -----------------------------------------------------------------------
    @abc.abstractmethod
    def claim(self, worker_id: str, engines: list[str], lease_seconds: float) -> Job | None:
        """Take the oldest queued job for one of `engines`, first reclaiming expired leases."""

    @abc.abstractmethod
    def heartbeat(self, job_id: str, worker_id: str, lease_seconds: float,
                  progress: int | None = None, stage: str | None = None) -> LeaseState:
        """Renew the lease and record progress."""

    @abc.abstractmethod
    def finish(self, job_id: str, worker_id: str, status: JobStatus,
               outputs: dict[str, Any] | None = None, error: dict[str, Any] | None = None,
               expires_at: float | None = None) -> bool:
        """End a claimed job; False if the worker no longer holds it."""

    def release(self, job_id: str, worker_id: str) -> bool:
        """Hand a claimed job back to the queue without counting the attempt (a worker shutting
        down); a job whose cancel was requested ends cancelled instead. False if the worker no
        longer holds the job."""
        raise NotImplementedError(f"{type(self).__name__} does not implement release")

    def save_checkpoint(self, job_id: str, worker_id: str, checkpoint: dict[str, Any] | None,
                        engine: str | None = None) -> bool:
        """Keep what a resumable engine needs to pick the job up again on its next attempt (a hosted
        provider's job id) in `params["checkpoint"]` (None removes it), and optionally move the job to
        another engine. False if the worker no longer holds the job."""
        raise NotImplementedError(f"{type(self).__name__} does not implement save_checkpoint")

    def reroute(self, job_id: str, worker_id: str, engine: str) -> bool:
        """Hand a claimed job back to the queue for another engine (a fail-over): its checkpoint
        dropped, its attempt not counted, as `release` does. False if the worker no longer holds it."""
        return self.save_checkpoint(job_id, worker_id, None, engine) and self.release(job_id, worker_id)

    @abc.abstractmethod
    def reclaim_expired(self) -> int:
        """Requeue (or fail, past max_attempts) running jobs whose lease has expired."""

    def fail_overdue_queued(self, max_wait_seconds: float) -> list[Job]:
        """Fail the jobs queued for longer than `max_wait_seconds` (measured from `updated_at`, the time
        the job last entered the queue, against the store's clock) with `rows.queue_timeout_error`, in one
        transaction that also appends their events and enqueues their webhooks. Returns them as they are
        now (failed), so the caller can delete their inputs. A job a worker claims meanwhile is not
        touched; one this call fails can no longer be claimed."""
        raise NotImplementedError(f"{type(self).__name__} does not implement fail_overdue_queued")

    # -- owner actions ---------------------------------------------------------------------
    @abc.abstractmethod
    def cancel(self, job_id: str, owner: str) -> Job:
        """Cancel a queued job at once, or flag a running one; Conflict if already finished."""

    @abc.abstractmethod
    def delete(self, job_id: str, owner: str) -> Job:
        """Remove the record (cancelling first if running). Returns the removed job."""

    @abc.abstractmethod
    def expire_due(self, now: float) -> list[Job]:
        """Mark finished jobs past `expires_at` as expired and return them (to delete media)."""

    # -- events (progress stream) ----------------------------------------------------------
    @abc.abstractmethod
    def events(self, job_id: str, after_seq: int = 0) -> list[dict[str, Any]]:
        """Status/progress changes of a job with seq > after_seq, oldest first."""

    # -- workers ---------------------------------------------------------------------------
    @abc.abstractmethod
    def register_worker(self, worker_id: str, info: dict[str, Any]) -> None:
        """Insert or refresh a worker's row (its engines and their readiness)."""

    @abc.abstractmethod
    def remove_worker(self, worker_id: str) -> None: ...

    @abc.abstractmethod
    def live_workers(self, within_seconds: float) -> list[dict[str, Any]]:
        """Workers that refreshed their row within the window: `{id, info, seen_at}`."""

    # -- webhooks (outbox) -----------------------------------------------------------------
    def webhook_secret(self, owner: str, rotate: bool = False) -> str:
        """The owner's signing secret (`whsec_...`), made on first use; `rotate` replaces it."""
        raise NotImplementedError(f"{type(self).__name__} does not implement webhook_secret")

    def claim_deliveries(self, limit: int, lease_seconds: float, *, per_origin: int | None = None,
                         busy: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
        """Up to `limit` pending deliveries that are due, oldest due first, each with its
        `next_attempt_at` pushed `lease_seconds` ahead so no other dispatcher sends it meanwhile.
        With `per_origin`, a due delivery whose receiver (`jobs.webhooks.delivery_origin`) already
        has that many, counting `busy[origin]` (the caller's in flight) and those taken earlier in
        this call, is skipped and left untouched (still due, in its place); later due deliveries to
        other receivers are taken instead. Rows: the columns of `jobs.webhooks.DELIVERY_COLUMNS`."""
        raise NotImplementedError(f"{type(self).__name__} does not implement claim_deliveries")

    def finish_delivery(self, delivery_id: str, delivered: bool, error: str | None = None,
                        retry_at: float | None = None) -> None:
        """Record an attempt: delivered; or not, to be tried again at `retry_at`, or (no
        `retry_at`) given up on as failed."""
        raise NotImplementedError(f"{type(self).__name__} does not implement finish_delivery")

    def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        """A job's deliveries, oldest first (inspection and tests)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement deliveries")

    # -- queue estimates --------------------------------------------------------------------
    def recent_run_seconds(self, engine: str, limit: int = 20) -> list[float]:
        """`outputs["run_seconds"]` of the engine's most recently finished completed jobs, newest first."""
        raise NotImplementedError(f"{type(self).__name__} does not implement recent_run_seconds")

    # -- metrics ---------------------------------------------------------------------------
    def counts(self) -> dict[tuple[str, str], int]:
        """How many jobs the store holds per `(model, status)`."""
        raise NotImplementedError(f"{type(self).__name__} does not implement counts")

    def active_by_engine(self) -> dict[tuple[str, str], int]:
        """Queued and running jobs per `(engine, status)`: the work waiting for, or held by, each
        engine's workers (what an autoscaler sizes a worker pool by)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement active_by_engine")

    def finished_since(self, after: float, after_id: str = "", limit: int = 1000) -> list[Job]:
        """Finished jobs (`finished_at` set) ordered by `(finished_at, id)`, strictly after
        `(after, after_id)`: pages through what workers finished, for metrics."""
        raise NotImplementedError(f"{type(self).__name__} does not implement finished_since")

    def wait_for_work(self, timeout: float) -> None:
        """Block until a job may have become claimable, or `timeout` seconds pass.

        A hint only: callers claim after it returns and may find nothing. This default polls;
        a store that can be told about new work (PostgreSQL's LISTEN/NOTIFY) wakes at once.
        """
        time.sleep(min(timeout, 0.2))

    def migrate(self) -> list[str]:
        """Apply pending schema migrations; returns their names (empty when up to date)."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def open_store(url: str) -> JobStore:
    """A store for a database URL: `sqlite:///path`, `memory://`, `postgresql://...`.

    A PostgreSQL URL may pick the schema the tables live in (created when missing):
    `postgresql://host/db?options=-csearch_path%3Dclipforge`. A database that cannot be opened is a
    ConfigError naming the (redacted) URL and the cause.
    """
    try:
        return _open_store(url)
    except ConfigError:
        raise
    except Exception as exc:  # the driver's own error, turned into one line an operator can act on
        raise ConfigError(f"cannot open the job store {redact_url(url)}: {exc}") from exc


def _open_store(url: str) -> JobStore:
    if url.startswith("sqlite:///"):
        from clipforge.jobs.sqlite import SQLiteJobStore

        return SQLiteJobStore(url.removeprefix("sqlite:///"))
    if url.startswith("memory://"):
        from clipforge.jobs.memory import MemoryJobStore

        return MemoryJobStore()
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from clipforge.jobs.postgres import PostgresJobStore
        except ImportError as exc:
            raise ConfigError(f"cannot open the job store {redact_url(url)}: PostgreSQL needs the postgres extra "
                              f"({exc.name} is not installed): scripts/install.sh image, or "
                              f"pip install 'clipforge[postgres]'") from None

        return PostgresJobStore(url)
    raise ConfigError(f"database URL must start with sqlite:///, postgresql:// or memory://, "
                      f"got {redact_url(url)!r}")
