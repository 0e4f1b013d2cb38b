"""Prometheus /metrics over real HTTP (values move as jobs run) and JSON logs with request and job ids."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from clipforge.core.settings import Settings
from clipforge.jobs.memory import MemoryJobStore
from helpers import LiveServer, data_uri, gradient_image, wait_terminal


def scrape(url: str) -> dict[str, dict[tuple, float]]:
    """name -> {sorted label items: value} for every sample."""
    reply = httpx.get(f"{url}/metrics", timeout=30)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(metrics: dict, name: str, **labels: str) -> float:
    return metrics.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = LiveServer(Path(tmp_path_factory.mktemp("metrics")), extra_env={"CLIPFORGE_LOG_FORMAT": "json"}).start()
    yield srv
    srv.stop()


def test_metrics_move_as_jobs_run(server: LiveServer):
    before = scrape(server.url)  # no API key: /metrics is open by default
    assert value(before, "clipforge_live_workers") == 1
    assert value(before, "clipforge_engine_ready_workers", engine="medium") == 1
    assert value(before, "clipforge_queue_depth", model="test/medium") == 0
    for name in ("clipforge_engine_queue_depth", "clipforge_engine_running_jobs"):  # present at 0 when idle
        assert before[name][(("engine", "medium"),)] == 0
    assert value(before, "clipforge_jobs", model="test/medium", status="completed") == 0
    assert value(before, "clipforge_job_run_seconds_count", model="test/medium", engine="medium",
                 status="completed") == 0

    c = httpx.Client(base_url=server.url, headers=server.headers(), timeout=30)
    image = data_uri(gradient_image(320, 320))
    ids = [c.post("/v2/video/generations", json={"model": "test/medium", "prompt": f"m{i}", "image_url": image},
                  headers={"X-Request-Id": f"req-metrics-{i}"}).json()["id"] for i in range(3)]
    during = scrape(server.url)
    assert value(during, "clipforge_queue_depth", model="test/medium") >= 1  # one worker, 2 s per job
    assert value(during, "clipforge_jobs", model="test/medium", status="queued") >= 1
    queued, running = (value(during, f"clipforge_engine_{n}", engine="medium") for n in ("queue_depth", "running_jobs"))
    assert queued >= 1 and running <= 1 and queued + running >= 2

    assert [wait_terminal(c, i)["status"] for i in ids] == ["completed"] * 3
    after = scrape(server.url)
    assert value(after, "clipforge_queue_depth", model="test/medium") == 0
    assert value(after, "clipforge_engine_queue_depth", engine="medium") == 0
    assert value(after, "clipforge_engine_running_jobs", engine="medium") == 0
    assert value(after, "clipforge_jobs", model="test/medium", status="completed") == 3
    run = dict(model="test/medium", engine="medium", status="completed")
    assert value(after, "clipforge_job_run_seconds_count", **run) == 3
    assert value(after, "clipforge_job_run_seconds_sum", **run) >= 3 * 2.0  # 8 steps x 0.25 s each
    assert value(after, "clipforge_job_run_seconds_bucket", le="1.0", **run) == 0
    assert value(after, "clipforge_job_run_seconds_bucket", le="+Inf", **run) == 3
    assert value(after, "clipforge_job_queue_wait_seconds_count", model="test/medium") == 3
    assert value(after, "clipforge_job_queue_wait_seconds_sum", model="test/medium") >= 2.0 + 4.0 - 1  # 2nd, 3rd waited
    assert value(after, "clipforge_job_encode_seconds_count", engine="medium") == 3
    assert 0 < value(after, "clipforge_job_encode_seconds_sum", engine="medium") < 60
    steps, count = (value(after, f"clipforge_engine_steps_per_second_{s}", engine="medium") for s in ("sum", "count"))
    assert count == 3 and 2.5 < steps / count <= 4.0  # 8 steps in a bit over 2 s

    again = scrape(server.url)  # counted once: a second scrape adds nothing
    assert value(again, "clipforge_job_run_seconds_count", **run) == 3

    records = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    assert records, server.log()[-2000:]
    by_request = [r for r in records if r.get("request_id") == "req-metrics-0"]
    assert any(r["logger"] == "clipforge.api.submit" and ids[0] in r["message"] for r in by_request), by_request
    assert any(r["logger"] == "uvicorn.access" and "/v2/video/generations" in r["message"] for r in by_request)
    by_job = [r for r in records if r.get("job_id") == ids[0]]
    assert {"clipforge.worker.loop"} <= {r["logger"] for r in by_job}
    assert all(r.get("worker_id") for r in by_job)
    assert any("completed" in r["message"] for r in by_job)


def test_metrics_can_require_a_key(tmp_path: Path):
    from clipforge.api.app import create_app

    app = create_app(Settings(home=tmp_path, api_keys=("k1",), metrics_auth=True), store=MemoryJobStore())
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        reply = client.get("/metrics", headers={"Authorization": "Bearer k1"})
        assert reply.status_code == 200 and "clipforge_queue_depth" in reply.text
    open_app = create_app(Settings(home=tmp_path, api_keys=("k1",)), store=MemoryJobStore())
    with TestClient(open_app) as client:
        assert client.get("/metrics").status_code == 200


def test_engine_gauges_count_work_per_engine_even_with_no_worker(tmp_path: Path):
    """What KEDA scales a worker pool by: jobs queued for an engine that no live worker serves yet."""
    from clipforge.api.app import create_app
    from clipforge.core.job import Job, new_job_id

    store = MemoryJobStore()
    for engine in ("ltx2", "ltx2", "preview"):
        store.create(Job(id=new_job_id("ltx-2"), owner="k1", model="ltx-2", engine=engine, params={}))
    store.claim("w1", ["preview"], 60)
    app = create_app(Settings(home=tmp_path, api_keys=("k1",)), store=store)
    with TestClient(app) as client:
        families = {f.name: {s.labels["engine"]: s.value for s in f.samples}
                    for f in text_string_to_metric_families(client.get("/metrics").text)
                    if f.name.startswith("clipforge_engine_") and f.type == "gauge" and "ready" not in f.name}
    assert families["clipforge_engine_queue_depth"] == {"ltx2": 2, "preview": 0}
    assert families["clipforge_engine_running_jobs"] == {"ltx2": 0, "preview": 1}


def test_requests_are_counted_per_process_for_the_api_autoscaler(tmp_path: Path):
    from clipforge.api.app import create_app

    def total(text: str) -> float:
        samples = [s for f in text_string_to_metric_families(text) if f.name == "clipforge_http_requests"
                   for s in f.samples if s.name == "clipforge_http_requests_total"]
        assert len(samples) == 1, text
        return samples[0].value

    app = create_app(Settings(home=tmp_path, api_keys=("k1",)), store=MemoryJobStore())
    with TestClient(app) as client:
        before = total(client.get("/metrics").text)
        for path in ("/healthz", "/v1/models", "/nope"):
            client.get(path)
        assert total(client.get("/metrics").text) == before + 4  # three requests and the first scrape
