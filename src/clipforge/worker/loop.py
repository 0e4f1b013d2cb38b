"""The worker process loop: register, claim, run, repeat; expire old outputs."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from clipforge.core import logs
from clipforge.core.routing import Routing
from clipforge.core.settings import Settings
from clipforge.engines.base import Engine, Readiness
from clipforge.engines.registry import engine_class, engine_readiness
from clipforge.jobs.base import JobStore
from clipforge.jobs.cleanup import EndedJobSweeper, delete_expired, fail_overdue_queued
from clipforge.storage.base import ArtifactStore
from clipforge.worker.runner import JobRunner
from clipforge.worker.webhooks import WebhookDispatcher

log = logging.getLogger(__name__)

REGISTER_EVERY = 5.0  # the worker's heartbeat: well inside core.routing.WORKER_TTL
RECHECK_EVERY = 60.0  # engine readiness again: a provider that was unreachable at start, a rotated key
EXPIRE_EVERY = 60.0
HAND_BACK_WAIT = 10.0  # after the grace period: how long a job may take to reach its next step and stop


def is_hosted(name: str, config: dict) -> bool:
    try:
        return bool(engine_class(name, config).hosted)
    except Exception:  # an engine that cannot be imported is not ready anyway
        return False


def housekeeping_interval(settings: Settings) -> float:
    """How often a worker expires outputs, fails jobs queued too long and sweeps inputs: every minute, or
    more often when the retention or the queue-wait limit is short (a quarter of it, at least a second)."""
    limits = [settings.retention_seconds] + ([settings.max_queue_seconds] if settings.max_queue_seconds > 0 else [])
    return min(EXPIRE_EVERY, *(max(1.0, limit / 4) for limit in limits))


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """Claims jobs for the engines that are ready here and runs them: one at a time, or with `slots` > 1
    (hosted engines, which wait on the network) that many at once in threads of this one process."""

    def __init__(self, store: JobStore, artifacts: ArtifactStore, routing: Routing, settings: Settings,
                 engines: list[str] | None = None, worker_id: str | None = None,
                 runner: JobRunner | None = None, slots: int = 1) -> None:
        self.store, self.artifacts, self.routing, self.settings = store, artifacts, routing, settings
        self.worker_id = worker_id or new_worker_id()
        self.runner = runner or JobRunner(store, artifacts, routing, settings)
        self._engine_lock = threading.Lock()
        # Extra slots share the first runner's engines (one HTTP client per provider, not one per slot).
        self.runners = [self.runner] + [JobRunner(store, artifacts, routing, settings, self._shared_engine)
                                        for _ in range(slots - 1)]
        self.engine_names = engines or routing.engine_names
        self.readiness: dict[str, Readiness] = {}
        self._checked_at = 0.0
        self.stop_event = threading.Event()
        self._expired_at = 0.0
        self._grace_timer: threading.Timer | None = None
        self._heartbeat: threading.Thread | None = None
        self.webhooks = WebhookDispatcher(store, artifacts, settings)  # runs while run_forever does
        self.sweeper = EndedJobSweeper(store, artifacts, since=time.time())

    def check_engines(self) -> dict[str, Readiness]:
        """Check every engine; log each one's state when it changes (the operator's full reason: the
        HTTP API shows only its public form)."""
        before = self.readiness
        self.readiness = {n: engine_readiness(n, self.routing.engine_config(n)) for n in self.engine_names}
        self._checked_at = time.monotonic()
        for name, state in self.readiness.items():
            old = before.get(name)
            if old is None or (old.ready, old.reason) != (state.ready, state.reason):
                log.log(logging.INFO if state.ready else logging.WARNING, "engine %s: %s", name,
                        "ready" if state.ready else f"not ready ({state.reason})")
        return self.readiness

    @property
    def hosted_engines(self) -> list[str]:
        """Ready engines that wait on a provider: the only ones the extra slots run."""
        return [n for n in self.ready_engines if is_hosted(n, self.routing.engine_config(n))]

    def _shared_engine(self, name: str) -> Engine:
        with self._engine_lock:
            return self.runner.engine(name)

    @property
    def ready_engines(self) -> list[str]:
        return [n for n, r in self.readiness.items() if r.ready]

    def register(self) -> None:
        info = {"engines": {n: r.as_dict() for n, r in self.readiness.items()},
                "host": socket.gethostname(), "pid": os.getpid()}
        self.store.register_worker(self.worker_id, info)

    # -- liveness ----------------------------------------------------------------------------
    def start_heartbeat(self) -> None:
        """Register now, then refresh the registration every REGISTER_EVERY seconds from a thread of
        its own, so a worker busy with a job of any length stays live (the job's lease has its own
        heartbeat in worker.progress)."""
        self.register()
        self._heartbeat = threading.Thread(target=self._beat, name="worker-heartbeat", daemon=True)
        self._heartbeat.start()

    def _beat(self) -> None:
        while not self.stop_event.wait(REGISTER_EVERY):
            try:
                self.register()
            except Exception:  # the store may be briefly unreachable: try again at the next beat
                log.exception("worker %s: heartbeat failed", self.worker_id)

    def stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None

    def run_once(self, runner: JobRunner | None = None, engines: list[str] | None = None) -> bool:
        """Claim and run one job; False when the queue had nothing for us."""
        names = self.ready_engines if engines is None else engines
        if not names:
            return False
        job = self.store.claim(self.worker_id, names, self.settings.lease_seconds)
        if job is None:
            return False
        with logs.bound(logs.job_id, job.id):
            log.info("job %s: claimed (engine %s, attempt %d)", job.id, job.engine, job.attempts)
            status = (runner or self.runner).run(job, self.worker_id)
            log.info("job %s: %s", job.id, status.value if status else "abandoned")
        return True

    # -- graceful shutdown -------------------------------------------------------------------
    def request_stop(self, grace_seconds: float | None = None) -> None:
        """Stop claiming. A running job may finish within the grace period; past it, the job is
        handed back to the queue (its attempt not counted) and the worker exits. Safe to call from
        a signal handler, and more than once."""
        if self.stop_event.is_set():
            return
        self.stop_event.set()
        grace = self.settings.shutdown_grace_seconds if grace_seconds is None else grace_seconds
        self._grace_timer = threading.Timer(max(0.0, grace), self._grace_expired, (grace,))
        self._grace_timer.daemon = True
        self._grace_timer.start()

    def _grace_expired(self, grace: float) -> None:
        running = [(r, r.current_job) for r in self.runners if r.current_job is not None and r.hand_back()]
        for _, job in running:
            log.warning("job %s: still running after the %.0f s shutdown grace period; handing it back",
                        job.id, grace)
        deadline = time.monotonic() + HAND_BACK_WAIT
        while running and time.monotonic() < deadline:
            running = [(r, job) for r, job in running if r.current_job is job]
            time.sleep(0.05)  # each stops at its next step and is handed back by its runner
        if not running:
            return
        # An engine is inside a long step that never calls back: hand its job back from here and leave.
        for _, job in running:
            self.store.release(job.id, self.worker_id)
            log.error("job %s: the engine did not stop within %.0f s; handed back, exiting now", job.id,
                      HAND_BACK_WAIT)
        self.store.remove_worker(self.worker_id)
        logging.shutdown()
        os._exit(0)

    def _wait_for_work(self) -> None:
        self.store.wait_for_work(0.5) if hasattr(self.store, "wait_for_work") else time.sleep(0.2)

    def _slot_loop(self, runner: JobRunner, hosted_only: bool) -> None:
        """One slot of a multi-slot worker: claim and run jobs until the worker stops, while the main
        thread keeps registering the worker however long the jobs take."""
        context = logs.worker_id.set(self.worker_id)
        try:
            while not self.stop_event.is_set():
                try:
                    if not self.run_once(runner, self.hosted_engines if hosted_only else None):
                        self._wait_for_work()
                except Exception:  # a store hiccup must not end the slot; the next claim retries
                    log.exception("worker slot: claim or run failed")
                    time.sleep(1.0)
        finally:
            logs.worker_id.reset(context)

    def expire_outputs(self) -> int:
        """Delete expired jobs' outputs and inputs, fail jobs queued past the queue-wait limit, and delete
        the inputs of jobs that ended for good."""
        expired = self.store.expire_due(time.time())
        for job in expired:
            delete_expired(self.artifacts, job)
        fail_overdue_queued(self.store, self.artifacts, self.settings.max_queue_seconds)
        self.sweeper.sweep()
        self._expired_at = time.monotonic()
        return len(expired)

    def run_forever(self) -> None:
        if not self.readiness:
            self.check_engines()
        log.info("worker %s: engines ready: %s", self.worker_id, ", ".join(self.ready_engines) or "none")
        context = logs.worker_id.set(self.worker_id)
        self.webhooks.start()
        # One slot: jobs run on this thread. Several: every slot is a thread (the first may run any ready
        # engine, the others hosted ones only) and this thread only does the housekeeping.
        slots = [threading.Thread(target=self._slot_loop, args=(r, i > 0), name=f"slot-{i}", daemon=True)
                 for i, r in enumerate(self.runners)] if len(self.runners) > 1 else []
        try:
            self.start_heartbeat()
            for thread in slots:
                thread.start()
            while not self.stop_event.is_set():
                now = time.monotonic()
                if now - self._checked_at >= RECHECK_EVERY:
                    self.check_engines()
                if now - self._expired_at >= housekeeping_interval(self.settings):
                    self.expire_outputs()
                if slots:
                    self.stop_event.wait(0.5)
                elif not self.run_once():
                    self._wait_for_work()
        finally:
            for thread in slots:
                thread.join()
            if self._grace_timer is not None:
                self._grace_timer.cancel()
            self.stop_event.set()  # ends the heartbeat, also when the loop left on an error
            self.stop_heartbeat()
            self.webhooks.stop()
            self.store.remove_worker(self.worker_id)
            self.runner.unload()
            logs.worker_id.reset(context)
            log.info("worker %s: stopped", self.worker_id)

