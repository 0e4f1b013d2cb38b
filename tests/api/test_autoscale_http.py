"""Scaled to zero: with `[autoscale]` engines and no live worker, the api stays ready, queues jobs for
them (the queue depth an autoscaler reads) and tells pollers that a worker is starting."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from clipforge.core.settings import Settings
from clipforge.jobs.eta import COLD_START_STAGE
from clipforge.jobs.memory import MemoryJobStore

MODELS_TOML = """
[models."ltx-2"]
engines = ["ltx2"]
[models."klingai/video-v2-6-pro-text-to-video"]
task = "t2v"
engines = ["ltx2", "preview"]
[models."preview"]
engines = ["preview"]

[autoscale]
engines = ["ltx2"]
cold_start_seconds = 180
"""


def make_client(tmp_path: Path, store: MemoryJobStore) -> TestClient:
    from clipforge.api.app import create_app

    config = tmp_path / "models.toml"
    config.write_text(MODELS_TOML)
    return TestClient(create_app(Settings(home=tmp_path, api_keys=("k1",), models_config=config), store=store))


def test_jobs_queue_for_an_engine_scaled_to_zero_and_polls_say_a_worker_is_starting(tmp_path: Path):
    store = MemoryJobStore()
    auth = {"Authorization": "Bearer k1"}
    with make_client(tmp_path, store) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200 and "ltx-2" in ready.json()["models"], ready.text
        assert "preview" not in ready.json()["models"]  # no worker and not autoscaled
        models = {m["id"]: m for m in client.get("/v1/models", headers=auth).json()["data"]}
        assert models["ltx-2"]["ready"] and models["ltx-2"]["engine"] == "ltx2"
        assert "autoscaler starts one" in models["ltx-2"]["engines"][0]["reason"]

        created = client.post("/v2/video/generations", headers=auth,
                              json={"model": "klingai/video-v2-6-pro-text-to-video", "prompt": "a lighthouse"})
        assert created.status_code == 200, created.text
        gen_id = created.json()["id"]
        assert store.get(gen_id).engine == "ltx2"
        poll = client.get(f"/v2/video/generations/{gen_id}", headers=auth).json()
        assert (poll["status"], poll["queue_position"]) == ("queued", 0)
        assert (poll["stage"], poll["eta_seconds"]) == (COLD_START_STAGE, 180.0)
        metrics = client.get("/metrics").text
        assert 'clipforge_engine_queue_depth{engine="ltx2"} 1.0' in metrics

        refused = client.post("/v2/video/generations", headers=auth, json={"model": "preview", "prompt": "sea"})
        assert refused.status_code == 503 and "preview: no live worker serves this engine" in refused.text

        store.register_worker("w1", {"engines": {"ltx2": {"ready": True}}})  # the worker came up
        poll = client.get(f"/v2/video/generations/{gen_id}", headers=auth).json()
        assert poll["stage"] != COLD_START_STAGE and poll["eta_seconds"] is None  # no run history yet
