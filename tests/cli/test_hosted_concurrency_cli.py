"""`clipforge worker --concurrency N`: N job slots in one process when every served engine is hosted."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from clipforge import cli

MODELS = """
[models."hosted/m"]
engines = ["aiml", "fal"]

[models."local/m"]
engines = ["fixed"]

[engines.aiml]
base_url = "http://127.0.0.1:9"
"""


@pytest.fixture
def calls(monkeypatch) -> list:
    seen: list = []
    monkeypatch.setattr(cli, "run_worker", lambda settings, names, slots=1, **kw: seen.append(("one", names, slots)))
    monkeypatch.setattr(cli, "run_worker_pool", lambda settings, names, gpus: seen.append(("pool", names, len(gpus))))
    return seen


def invoke(tmp_path: Path, *args: str) -> None:
    config = tmp_path / "models.toml"
    config.write_text(MODELS)
    result = CliRunner().invoke(cli.main, ["worker", "--home", str(tmp_path), "--models-config", str(config), *args])
    assert result.exit_code == 0, result.output


def test_hosted_engines_run_as_slots_of_one_process(tmp_path: Path, calls: list):
    invoke(tmp_path, "--engines", "aiml,fal", "--concurrency", "64")
    assert calls == [("one", ["aiml", "fal"], 64)]


def test_other_engines_keep_one_process_per_slot(tmp_path: Path, calls: list):
    invoke(tmp_path, "--engines", "fixed", "--concurrency", "3")
    invoke(tmp_path, "--concurrency", "2")  # all routed engines: fixed is not hosted
    assert calls == [("pool", ["fixed"], 3), ("pool", None, 2)]
