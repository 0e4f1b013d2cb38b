"""In-memory job store for unit tests and `clipforge generate`: the same contract, no I/O."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Mapping
from typing import Any

from clipforge.core.errors import Conflict, NotFound, QuotaExceeded
from clipforge.core.job import Job, JobStatus
from clipforge.jobs.base import JobStore, LeaseState
from clipforge.jobs.rows import cancelled_error, lost_worker_error, queue_timeout_error
from clipforge.jobs.webhooks import ReceiverCap, delivery_for, new_secret


class MemoryJobStore(JobStore):
    nonblocking_reads = True  # its lock is only ever held for dictionary work

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._events: list[dict[str, Any]] = []
        self._workers: dict[str, dict[str, Any]] = {}
        self._deliveries: dict[str, dict[str, Any]] = {}
        self._secrets: dict[str, str] = {}
        self._seq = 0

    def _event(self, job: Job) -> None:
        self._seq += 1  # a counter, not len(): delete() drops events
        self._events.append({"seq": self._seq, "job_id": job.id, "ts": time.time(),
                             "status": job.status.value, "progress": job.progress, "stage": job.stage})

    def _enqueue_webhook(self, job: Job) -> None:
        delivery = delivery_for(job.id, job.owner, job.webhook, job.status)
        if delivery is not None:
            self._deliveries[delivery["id"]] = delivery

    def _owned(self, job_id: str, owner: str | None) -> Job:
        job = self._jobs.get(job_id)
        if job is None or (owner is not None and job.owner != owner):
            raise NotFound(f"generation '{job_id}' not found")
        return job

    def create(self, job: Job, max_active: int = 0) -> tuple[Job, bool]:
        with self._lock:
            earlier = self.find_by_idempotency_key(job.owner, job.idempotency_key) if job.idempotency_key else None
            if earlier is not None:
                if earlier.request_hash != job.request_hash:
                    raise Conflict("Idempotency-Key was already used with a different request body")
                return earlier, False
            if max_active > 0:
                active = sum(1 for j in self._jobs.values() if j.owner == job.owner and not j.terminal)
                if active >= max_active:
                    raise QuotaExceeded(max_active, active)
            self._jobs[job.id] = copy.deepcopy(job)
            self._event(job)
            return job, True

    def find_by_idempotency_key(self, owner: str, key: str) -> Job | None:
        with self._lock:
            for job in self._jobs.values():
                if (job.owner, job.idempotency_key) == (owner, key):
                    return copy.deepcopy(job)
            return None

    def get(self, job_id: str, owner: str | None = None) -> Job:
        with self._lock:
            return copy.deepcopy(self._owned(job_id, owner))

    def list(self, owner: str, limit: int = 20, after: str | None = None, order: str = "desc",
             status: JobStatus | None = None) -> list[Job]:
        with self._lock:
            jobs = sorted((j for j in self._jobs.values() if j.owner == owner),
                          key=lambda j: (j.created_at, j.id), reverse=(order == "desc"))
            if status is not None:
                jobs = [j for j in jobs if j.status == status]
            if after:
                anchor = self._owned(after, owner)
                key = (anchor.created_at, anchor.id)
                jobs = [j for j in jobs if ((j.created_at, j.id) < key if order == "desc"
                                            else (j.created_at, j.id) > key)]
            return [copy.deepcopy(j) for j in jobs[:limit]]

    def queue_position(self, job: Job) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.status == JobStatus.QUEUED
                       and j.engine == job.engine and (j.created_at, j.id) < (job.created_at, job.id))

    def claim(self, worker_id: str, engines: list[str], lease_seconds: float) -> Job | None:
        self.reclaim_expired()
        with self._lock:
            queued = [j for j in self._jobs.values() if j.status == JobStatus.QUEUED and j.engine in engines]
            if not queued:
                return None
            job = min(queued, key=lambda j: (j.created_at, j.id))
            now = time.time()
            job.status, job.worker_id, job.stage = JobStatus.RUNNING, worker_id, "starting"
            job.lease_expires_at, job.attempts, job.updated_at = now + lease_seconds, job.attempts + 1, now
            first_start = job.started_at is None
            job.started_at = job.started_at or now
            self._event(job)
            if first_start:
                self._enqueue_webhook(job)
            return copy.deepcopy(job)

    def heartbeat(self, job_id: str, worker_id: str, lease_seconds: float,
                  progress: int | None = None, stage: str | None = None) -> LeaseState:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status != JobStatus.RUNNING or job.worker_id != worker_id:
                return LeaseState.LOST
            before = (job.progress, job.stage)
            job.lease_expires_at = time.time() + lease_seconds
            if progress is not None:
                job.progress = max(0, min(100, int(progress)))
            if stage is not None:
                job.stage = stage
            if (job.progress, job.stage) != before:
                self._event(job)
            return LeaseState.CANCEL if job.cancel_requested else LeaseState.OK

    def finish(self, job_id: str, worker_id: str, status: JobStatus,
               outputs: dict[str, Any] | None = None, error: dict[str, Any] | None = None,
               expires_at: float | None = None) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status != JobStatus.RUNNING or job.worker_id != worker_id:
                return False
            job.status, job.outputs, job.error, job.expires_at = status, outputs, error, expires_at
            job.finished_at = job.updated_at = time.time()
            job.lease_expires_at, job.stage = None, None
            if status == JobStatus.COMPLETED:
                job.progress = 100
            self._event(job)
            self._enqueue_webhook(job)
            return True

    def save_checkpoint(self, job_id: str, worker_id: str, checkpoint: dict[str, Any] | None,
                        engine: str | None = None) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status != JobStatus.RUNNING or job.worker_id != worker_id:
                return False
            job.params = {k: v for k, v in job.params.items() if k != "checkpoint"}
            if checkpoint is not None:
                job.params["checkpoint"] = copy.deepcopy(checkpoint)
            job.engine, job.updated_at = engine or job.engine, time.time()
            return True

    def release(self, job_id: str, worker_id: str) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status != JobStatus.RUNNING or job.worker_id != worker_id:
                return False
            now = time.time()
            job.worker_id, job.updated_at, job.stage, job.lease_expires_at = None, now, None, None
            if job.cancel_requested:
                job.status, job.error, job.finished_at = JobStatus.CANCELLED, cancelled_error(), now
            else:
                job.status, job.progress, job.attempts = JobStatus.QUEUED, 0, max(0, job.attempts - 1)
            self._event(job)
            self._enqueue_webhook(job)
            return True

    def counts(self) -> dict[tuple[str, str], int]:
        with self._lock:
            out: dict[tuple[str, str], int] = {}
            for job in self._jobs.values():
                key = (job.model, job.status.value)
                out[key] = out.get(key, 0) + 1
            return out

    def active_by_engine(self) -> dict[tuple[str, str], int]:
        with self._lock:
            out: dict[tuple[str, str], int] = {}
            for job in self._jobs.values():
                if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
                    out[(job.engine, job.status.value)] = out.get((job.engine, job.status.value), 0) + 1
            return out

    def finished_since(self, after: float, after_id: str = "", limit: int = 1000) -> list[Job]:
        with self._lock:
            done = sorted((j for j in self._jobs.values() if j.finished_at is not None
                           and (j.finished_at, j.id) > (after, after_id)), key=lambda j: (j.finished_at, j.id))
            return [copy.deepcopy(j) for j in done[:limit]]

    def reclaim_expired(self) -> int:
        now = time.time()
        with self._lock:
            stale = [j for j in self._jobs.values() if j.status == JobStatus.RUNNING
                     and j.lease_expires_at is not None and j.lease_expires_at < now]
            for job in stale:
                job.worker_id, job.updated_at, job.stage, job.lease_expires_at = None, now, None, None
                if job.cancel_requested:
                    job.status, job.error, job.finished_at = JobStatus.CANCELLED, cancelled_error(), now
                elif job.attempts >= job.max_attempts:
                    job.status, job.error, job.finished_at = JobStatus.FAILED, lost_worker_error(job.attempts), now
                else:
                    job.status, job.progress = JobStatus.QUEUED, 0
                self._event(job)
                self._enqueue_webhook(job)
            return len(stale)

    def fail_overdue_queued(self, max_wait_seconds: float) -> list[Job]:
        now = time.time()
        with self._lock:
            overdue = sorted((j for j in self._jobs.values() if j.status == JobStatus.QUEUED
                              and j.updated_at < now - max_wait_seconds), key=lambda j: (j.created_at, j.id))
            for job in overdue:
                job.status, job.error = JobStatus.FAILED, queue_timeout_error(max_wait_seconds, job.engine)
                job.finished_at = job.updated_at = now
                job.stage = None
                self._event(job)
                self._enqueue_webhook(job)
            return [copy.deepcopy(j) for j in overdue]

    def cancel(self, job_id: str, owner: str) -> Job:
        with self._lock:
            job = self._owned(job_id, owner)
            if job.terminal:
                raise Conflict(f"generation '{job_id}' already finished with status '{job.status.value}'; "
                               "only queued or running generations can be cancelled")
            if job.status == JobStatus.QUEUED:
                job.status, job.error, job.finished_at = JobStatus.CANCELLED, cancelled_error(), time.time()
                self._event(job)
                self._enqueue_webhook(job)
            else:
                job.cancel_requested = True
            return copy.deepcopy(job)

    def delete(self, job_id: str, owner: str) -> Job:
        with self._lock:
            job = self._owned(job_id, owner)
            del self._jobs[job_id]
            self._events = [e for e in self._events if e["job_id"] != job_id]
            return job

    def expire_due(self, now: float) -> list[Job]:
        with self._lock:
            due = [j for j in self._jobs.values() if j.status == JobStatus.COMPLETED
                   and j.expires_at is not None and j.expires_at <= now]
            for job in due:
                job.status, job.updated_at = JobStatus.EXPIRED, now
                self._event(job)
            return [copy.deepcopy(j) for j in due]

    def events(self, job_id: str, after_seq: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [{k: v for k, v in e.items() if k != "job_id"} for e in self._events
                    if e["job_id"] == job_id and e["seq"] > after_seq]

    # -- webhooks ----------------------------------------------------------------------------
    def webhook_secret(self, owner: str, rotate: bool = False) -> str:
        with self._lock:
            if rotate or owner not in self._secrets:
                self._secrets[owner] = new_secret()
            return self._secrets[owner]

    def claim_deliveries(self, limit: int, lease_seconds: float, *, per_origin: int | None = None,
                         busy: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
        now = time.time()
        cap = ReceiverCap(per_origin, busy)
        with self._lock:
            due = [d for d in sorted((d for d in self._deliveries.values()
                                      if d["status"] == "pending" and d["next_attempt_at"] <= now),
                                     key=lambda d: (d["next_attempt_at"], d["id"])) if cap.admit(d["url"])][:limit]
            for d in due:
                d["next_attempt_at"], d["updated_at"] = now + lease_seconds, now
            return [dict(d) for d in due]

    def finish_delivery(self, delivery_id: str, delivered: bool, error: str | None = None,
                        retry_at: float | None = None) -> None:
        now = time.time()
        with self._lock:
            d = self._deliveries.get(delivery_id)
            if d is None:
                return
            d["attempts"] += 1
            d["updated_at"], d["last_error"] = now, None if delivered else error
            if delivered:
                d["status"], d["delivered_at"] = "delivered", now
            elif retry_at is None:
                d["status"] = "failed"
            else:
                d["next_attempt_at"] = retry_at

    def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(d) for d in sorted(self._deliveries.values(), key=lambda d: (d["created_at"], d["id"]))
                    if d["job_id"] == job_id]

    def recent_run_seconds(self, engine: str, limit: int = 20) -> list[float]:
        with self._lock:
            done = sorted((j for j in self._jobs.values() if j.engine == engine and j.finished_at is not None
                           and j.status in (JobStatus.COMPLETED, JobStatus.EXPIRED)
                           and isinstance((j.outputs or {}).get("run_seconds"), (int, float))),
                          key=lambda j: (j.finished_at, j.id), reverse=True)
            return [float(j.outputs["run_seconds"]) for j in done[:limit]]  # type: ignore[index]

    def register_worker(self, worker_id: str, info: dict[str, Any]) -> None:
        with self._lock:
            self._workers[worker_id] = {"id": worker_id, "info": info, "seen_at": time.time()}

    def remove_worker(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)

    def live_workers(self, within_seconds: float) -> list[dict[str, Any]]:
        cutoff = time.time() - within_seconds
        with self._lock:
            return [dict(w) for w in self._workers.values() if w["seen_at"] >= cutoff]
