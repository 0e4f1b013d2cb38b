"""Readiness reasons over HTTP name no provider URL, host, address or path: the operator sees those in the
worker's log and `clipforge models --verbose`; `/v1/models`, `/readyz` and a create's 503 say what, not where."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from clipforge.api.app import create_app
from clipforge.cli import main
from clipforge.core.redact import redact
from clipforge.core.routing import load_routing
from clipforge.core.settings import Settings
from clipforge.jobs.memory import MemoryJobStore
from clipforge.storage.local import LocalArtifactStore
from clipforge.worker.loop import Worker

AUTH = {"Authorization": "Bearer k1"}
SECRET_PATH = "internal-gateway-7f3a"  # in base_url: must stay on the operator's side


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def unreachable(tmp_path: Path, monkeypatch) -> tuple[Path, str]:
    """A models.toml routing model "m" to an aiml engine whose base_url answers nothing."""
    base_url = f"http://127.0.0.1:{closed_port()}/{SECRET_PATH}"
    config = tmp_path / "models.toml"
    config.write_text(f'[models."m"]\ntask = "t2v"\nengines = ["aiml"]\n\n[engines.aiml]\n'
                      f'api_key_env = "H16_PUBLIC_KEY"\nbase_url = "{base_url}"\nrequest_timeout_seconds = 5\n')
    monkeypatch.setenv("H16_PUBLIC_KEY", "k-provider")
    return config, base_url


def test_an_unreachable_provider_is_explained_without_its_url(tmp_path: Path, unreachable, caplog):
    config, base_url = unreachable
    store = MemoryJobStore()
    settings = Settings(home=tmp_path, api_keys=("k1",), models_config=config)
    worker = Worker(store, LocalArtifactStore(tmp_path / "media"), load_routing(config), settings, worker_id="w1")
    with caplog.at_level(logging.INFO, logger="clipforge"):
        worker.check_engines()
    worker.register()
    assert f"cannot reach {base_url}" in caplog.text  # the operator's log has the detail

    with TestClient(create_app(settings, store=store)) as client:
        listed = client.get("/v1/models", headers=AUTH)
        created = client.post("/v2/video/generations", headers=AUTH, json={"model": "m", "prompt": "a bay"})
    assert listed.status_code == 200
    engine = listed.json()["data"][0]["engines"][0]
    assert engine["name"] == "aiml" and engine["ready"] is False
    assert engine["reason"] == "provider not reachable"
    assert created.status_code == 503 and "aiml: provider not reachable" in created.text
    for body in (listed.text, created.text):
        assert "127.0.0.1" not in body and SECRET_PATH not in body and "ConnectError" not in body

    result = CliRunner().invoke(main, ["models", "--models-config", str(config), "--verbose"])
    assert result.exit_code == 0 and f"aiml       not ready: aiml: cannot reach {base_url}" in result.output


def test_reasons_without_a_public_form_are_redacted_at_the_http_boundary(tmp_path: Path):
    """A worker of an engine that gives no public reason (an older worker, a custom engine, ltx2's paths)."""
    config = tmp_path / "models.toml"
    config.write_text('[models."m"]\ntask = "t2v"\nengines = ["ltx2"]\n')
    store = MemoryJobStore()
    reason = ("weights not found at /srv/models/ltx-2 (set path in models.toml); mirror "
              "https://weights.corp.example/ltx at gpu-7.corp.example:8000, 10.1.2.3 or [fd00::7]:443")
    store.register_worker("w", {"engines": {"ltx2": {"ready": False, "reason": reason}}})
    with TestClient(create_app(Settings(home=tmp_path, api_keys=("k1",), models_config=config), store=store)) as c:
        shown = c.get("/v1/models", headers=AUTH).json()["data"][0]["engines"][0]["reason"]
    assert shown == ("weights not found at <path> (set path in models.toml); mirror <url> at <host>, "
                     "<address> or <address>")


def test_readyz_hides_the_job_store_error_and_logs_it(tmp_path: Path, caplog):
    class Down(MemoryJobStore):
        def live_workers(self, within_seconds: float):
            raise ConnectionError('connection to server at "db.internal.example" (10.9.8.7), port 5432 failed')

    config = tmp_path / "models.toml"
    config.write_text('[models."m"]\nengines = ["preview"]\n')
    with caplog.at_level(logging.WARNING), \
            TestClient(create_app(Settings(home=tmp_path, api_keys=("k1",), models_config=config), store=Down())) as c:
        r = c.get("/readyz")
    assert r.status_code == 503 and r.json() == {"status": "not ready", "reason": "job store unreachable"}
    assert "db.internal.example" in caplog.text


@pytest.mark.parametrize(("text", "kept"), [
    ("python package 'torch' is not installed: pip install 'clipforge[models]'", True),
    ("two_stage = true needs ltx-2-19b-distilled-lora-384.safetensors, e.g. in [engines.ltx2]", True),
    ("HTTP 401/403 at 12:30:45, version 2.6", True),
    ("cannot reach api.aimlapi.com", False),
])
def test_redact_keeps_plain_words_and_file_names(text: str, kept: bool):
    assert (redact(text) == text) is kept
