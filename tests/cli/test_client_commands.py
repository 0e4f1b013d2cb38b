"""The CLI as a client (generate --server, status, list, cancel) through click's runner against a live server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from clipforge.cli import main
from clipforge.media.probe import probe
from helpers import LiveServer, free_port, gradient_image


@pytest.fixture
def run(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CLIPFORGE_SERVER", live_server.url)
    monkeypatch.setenv("CLIPFORGE_API_KEY", live_server.keys[0])

    def invoke(*args: str) -> object:
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


def submit(live_server: LiveServer, model: str = "test/fixed") -> str:
    body = {"model": model, "prompt": "cli", "aspect_ratio": "1:1"}
    return httpx.post(f"{live_server.url}/v2/video/generations", json=body, headers=live_server.headers()).json()["id"]


def test_generate_on_a_server_downloads(run, tmp_path: Path):
    (tmp_path / "first.png").write_bytes(gradient_image(320, 320))
    out = tmp_path / "clip.mp4"
    result = run("generate", "--prompt", "a test clip", "--image", tmp_path / "first.png", "--model", "test/fixed",
                 "--no-audio", "-o", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (320x320, 5 s, no audio)" in result.stdout
    assert "submitted" in result.stderr and "100/100" in result.stderr  # the progress bar reached the end
    info = probe(out)
    assert (info.video.width, info.video.height, info.video.frames) == (320, 320, 120) and info.audio is None


def test_status_and_json(run, live_server: LiveServer):
    gen_id = submit(live_server)
    result = run("status", gen_id)
    assert result.exit_code == 0 and result.stdout.startswith(gen_id)
    assert any(s in result.stdout for s in ("queued", "generating", "completed"))
    data = json.loads(run("status", gen_id, "--json").stdout)
    assert data["id"] == gen_id and data["object"] == "video.generation"


def test_list_and_json(run, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CLIPFORGE_API_KEY", live_server.keys[1])  # a clean listing of its own
    headers = live_server.headers(1)
    ids = [httpx.post(f"{live_server.url}/v2/video/generations", json={"model": "test/fixed", "prompt": str(i)},
                      headers=headers).json()["id"] for i in range(3)]
    result = run("list", "--limit", "2")
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.stdout.splitlines()] == ids[::-1][:2]
    assert f"--after {ids[1]}" in result.stderr
    page = json.loads(run("list", "--json", "--after", ids[1]).stdout)
    assert [g["id"] for g in page["data"]] == ids[:1] and page["has_more"] is False


def test_cancel_and_json(run, live_server: LiveServer):
    gen_id = submit(live_server, "test/slow")
    result = run("cancel", gen_id)
    if result.exit_code and "no route" in result.stderr:
        pytest.skip("this server has no DELETE /v2/video/generations/{id}")
    assert result.exit_code == 0 and result.stdout.startswith("cancel requested: " + gen_id)
    again = run("cancel", gen_id, "--json")
    assert again.exit_code == 1 and again.stderr.startswith("Error: ") and "(HTTP 409)" in again.stderr
    other = submit(live_server, "test/slow")
    assert json.loads(run("cancel", other, "--json").stdout)["cancel_requested"] is True


@pytest.mark.parametrize("args, words", [
    (("status", "no-such-id"), "not found (HTTP 404)"),
    (("generate", "--prompt", "x", "--model", "no/such-model", "-o", "x.mp4"), "unknown model 'no/such-model'"),
    (("list", "--api-key", "wrong"), "invalid API key (HTTP 401)"),
])
def test_failures_print_one_error_line(run, args: tuple, words: str):
    result = run(*args)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ") and words in result.stderr


def test_unreachable_server_is_one_error_line(run):
    result = run("status", "x", "--server", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot reach the server:")


def test_missing_key_is_one_error_line(run, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CLIPFORGE_API_KEY")
    monkeypatch.delenv("AIMLAPI_API_KEY", raising=False)
    result = run("list")
    assert result.exit_code == 1 and result.stderr.startswith("Error: no API key")
