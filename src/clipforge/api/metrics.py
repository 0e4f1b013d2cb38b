"""Prometheus `/metrics`, read from the job store at scrape time, and the request-id log context.

Why from the store, not from counters in the worker processes: workers run in other processes and,
in a fleet, on other machines. prometheus_client's multiprocess mode only merges processes that
share a directory on one machine, so GPU boxes' workers would be invisible to the api that is
scraped, and every worker would need a scrape target of its own. The job rows already hold what the
histograms need (created_at, started_at, finished_at, and the worker's `outputs.timings`), so any
api replica reports the whole fleet, the same numbers, and nothing is lost when a worker dies.

- Gauges (`clipforge_queue_depth`, `clipforge_jobs`, `clipforge_live_workers`, ...) are counted afresh
  at each scrape. `clipforge_engine_queue_depth` and `clipforge_engine_running_jobs` count per engine
  (the engine a job was queued for), which is what an autoscaler sizes a worker pool by: a worker
  serves engines, not models. Every routed engine is reported, at 0 when idle, so a query for it
  never comes back empty.
- One counter is per process instead: `clipforge_http_requests_total`, the requests this api replica
  answered, whose rate an HPA scales the api replicas on (deploy/kubernetes, docs/kubernetes.md).
- Histograms grow by the jobs that finished since the previous scrape: the collector pages through
  `JobStore.finished_since` by `(finished_at, id)` and counts each job once. It re-reads a trailing
  window (`LATE_WINDOW`) so a job whose finish committed late is still counted. A fresh process first
  reads every finished job in the store, so all replicas agree and a restart is not a counter reset.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from clipforge.api.auth import caller_policy
from clipforge.api.services import Services, services
from clipforge.core import logs
from clipforge.core.job import Job, JobStatus
from clipforge.core.routing import WORKER_TTL, Routing
from clipforge.jobs.base import JobStore

LATE_WINDOW = 120.0  # seconds: a finish that commits this much after its finished_at is still counted
PAGE = 2000

QUEUE_WAIT_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
ENCODE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
STEPS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250)


class _Histogram:
    """Cumulative bucket counts and sum for each label set."""

    def __init__(self, name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> None:
        self.name, self.doc, self.labels, self.bounds = name, doc, labels, buckets
        self.series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        counts, total = self.series.setdefault(labels, ([0] * (len(self.bounds) + 1), [0.0]))
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                counts[i] += 1
        counts[-1] += 1
        total[0] += value

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.doc, labels=list(self.labels))
        for labels, (counts, total) in sorted(self.series.items()):
            buckets = [(str(float(b)), counts[i]) for i, b in enumerate(self.bounds)] + [("+Inf", counts[-1])]
            family.add_metric(list(labels), buckets, total[0])
        return family


class StoreCollector:
    """A prometheus_client collector that reads the job store at each scrape."""

    def __init__(self, store: JobStore, routing: Routing) -> None:
        self.store, self.routing = store, routing
        self._lock = threading.Lock()
        self._cursor: tuple[float, str] = (0.0, "")  # the last (finished_at, id) counted
        self._recent: dict[str, float] = {}  # ids counted whose finished_at is within LATE_WINDOW of the cursor
        self.queue_wait = _Histogram("clipforge_job_queue_wait_seconds",
                                     "Time from submission to a worker's first claim, per finished job.",
                                     ("model",), QUEUE_WAIT_BUCKETS)
        self.run = _Histogram("clipforge_job_run_seconds", "Time from first claim to the end, per finished job.",
                              ("model", "engine", "status"), RUN_BUCKETS)
        self.encode = _Histogram("clipforge_job_encode_seconds", "Time spent encoding the MP4, per completed job.",
                                 ("engine",), ENCODE_BUCKETS)
        self.steps = _Histogram("clipforge_engine_steps_per_second",
                                "Engine steps per second of engine time, per completed job.", ("engine",),
                                STEPS_BUCKETS)

    def describe(self) -> Iterable[Metric]:
        return []  # no describe-time scrape of the store

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            yield from self._gauges()
            self._advance()
            for hist in (self.queue_wait, self.run, self.encode, self.steps):
                yield hist.family()

    # -- gauges ------------------------------------------------------------------------------
    def _gauges(self) -> Iterator[Metric]:
        counts = self.store.counts()
        depth = GaugeMetricFamily("clipforge_queue_depth", "Jobs waiting for a worker, per model.", labels=["model"])
        queued = {m: 0 for m in self.routing.models}
        for (model, status), n in counts.items():
            if status == JobStatus.QUEUED.value:
                queued[model] = queued.get(model, 0) + n
        for model, n in sorted(queued.items()):
            depth.add_metric([model], n)
        yield depth
        jobs = GaugeMetricFamily("clipforge_jobs", "Jobs in the store, per model and status.",
                                 labels=["model", "status"])
        for model in sorted({m for m, _ in counts} | set(self.routing.models)):
            for status in JobStatus:
                jobs.add_metric([model, status.value], counts.get((model, status.value), 0))
        yield jobs
        workers = self.store.live_workers(WORKER_TTL)
        live = GaugeMetricFamily("clipforge_live_workers", f"Workers whose heartbeat is under {WORKER_TTL:.0f} s old.")
        live.add_metric([], len(workers))
        yield live
        ready = GaugeMetricFamily("clipforge_engine_ready_workers", "Live workers with the engine ready, per engine.",
                                  labels=["engine"])
        per_engine = {e: 0 for e in self.routing.engine_names}
        for worker in workers:
            for name, state in (worker.get("info") or {}).get("engines", {}).items():
                per_engine.setdefault(name, 0)
                per_engine[name] += 1 if state.get("ready") else 0
        for name, n in sorted(per_engine.items()):
            ready.add_metric([name], n)
        yield ready
        yield from self._engine_gauges()

    def _engine_gauges(self) -> Iterator[Metric]:
        active = self.store.active_by_engine()
        engines = sorted(set(self.routing.engine_names) | {e for e, _ in active})
        for status, name, doc in ((JobStatus.QUEUED, "clipforge_engine_queue_depth",
                                   "Jobs waiting for a worker, per engine they were queued for."),
                                  (JobStatus.RUNNING, "clipforge_engine_running_jobs",
                                   "Jobs a worker is running, per engine.")):
            gauge = GaugeMetricFamily(name, doc, labels=["engine"])
            for engine in engines:
                gauge.add_metric([engine], active.get((engine, status.value), 0))
            yield gauge

    # -- histograms --------------------------------------------------------------------------
    def _advance(self) -> None:
        """Count the jobs finished since the last scrape (and late ones within the window)."""
        after = (max(0.0, self._cursor[0] - LATE_WINDOW), "") if self._cursor[0] else (0.0, "")
        while True:
            page = self.store.finished_since(after[0], after[1], PAGE)
            for job in page:
                if job.id not in self._recent:
                    self._observe(job)
                    self._recent[job.id] = job.finished_at or 0.0
                if (job.finished_at or 0.0, job.id) > self._cursor:
                    self._cursor = (job.finished_at or 0.0, job.id)
            if len(page) < PAGE:
                break
            after = (page[-1].finished_at or 0.0, page[-1].id)
        horizon = self._cursor[0] - LATE_WINDOW
        self._recent = {k: v for k, v in self._recent.items() if v >= horizon}

    def _observe(self, job: Job) -> None:
        if job.started_at is None or job.finished_at is None:
            return  # cancelled or expired before any worker took it
        self.queue_wait.observe((job.model,), max(0.0, job.started_at - job.created_at))
        self.run.observe((job.model, job.engine, job.status.value), max(0.0, job.finished_at - job.started_at))
        timings: dict[str, Any] = (job.outputs or {}).get("timings") or {}
        if "encode_seconds" in timings:
            self.encode.observe((job.engine,), float(timings["encode_seconds"]))
        engine_seconds, steps = float(timings.get("engine_seconds") or 0), int(timings.get("engine_steps") or 0)
        if engine_seconds > 0 and steps > 0:
            self.steps.observe((job.engine,), steps / engine_seconds)


class RequestCounter:
    """HTTP requests this process answered (counted by LogContext; one event loop, so a plain int)."""

    def __init__(self) -> None:
        self.total = 0

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("clipforge_http_requests", "HTTP requests this api process answered.")
        family.add_metric([], self.total)
        yield family


REQUESTS = RequestCounter()


def registry_for(request: Request, svc: Services) -> CollectorRegistry:
    """The app's registry: one StoreCollector per process, so its histograms accumulate."""
    registry = getattr(request.app.state, "metrics_registry", None)
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StoreCollector(svc.store, svc.routing))
        registry.register(REQUESTS)
        request.app.state.metrics_registry = registry
    return registry


def metrics(request: Request, svc: Services = Depends(services)) -> Response:
    """Prometheus text exposition (a plain `def`: the store is read in the threadpool)."""
    if svc.settings.metrics_auth:
        caller_policy(request)
    return Response(generate_latest(registry_for(request, svc)), media_type=CONTENT_TYPE_LATEST)


class LogContext:
    """ASGI middleware (inside RequestContext): the request id in scope for every log record, and the
    per-process request count."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        request_id = (scope.get("state") or {}).get("request_id") if scope["type"] == "http" else None
        if scope["type"] == "http":
            REQUESTS.total += 1
        if request_id is None:
            return await self.app(scope, receive, send)
        with logs.bound(logs.request_id, request_id):
            await self.app(scope, receive, send)


def attach_router(app: FastAPI) -> None:
    router = APIRouter(tags=["system"])
    router.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    app.include_router(router)
