"""The CLI as a client (generate --server, status, list, cancel) through click's runner against a live server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from clipforge.cli import main
from clipforge.media.probe import probe
from helpers import LiveServer, free_port, gradient_image, wait_terminal


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


def one_error_line(result: object) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output and "[Errno" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("server, words", [
    ("http://127.0.0.1:{port}", "connection refused: nothing is listening there (is the server running?)"),
    ("http://no-such-host.invalid:8000", "the host name"),  # not found, or DNS did not answer: in words
])
def test_unreachable_server_is_one_error_line_in_words(run, server: str, words: str):
    line = one_error_line(run("status", "x", "--server", server.format(port=free_port())))
    assert line.startswith("Error: cannot reach the server:") and words in line


def test_missing_key_is_one_error_line_naming_the_flag(run, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CLIPFORGE_API_KEY")
    monkeypatch.delenv("AIMLAPI_API_KEY", raising=False)
    line = one_error_line(run("list"))
    assert line.startswith("Error: no API key: pass --api-key or set CLIPFORGE_API_KEY")
    assert "api_key=" not in line


@pytest.mark.parametrize("server", [True, False])
def test_bad_image_files_are_one_error_line_naming_the_flag(run, tmp_path: Path, server: bool):
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "first.png").write_bytes(gradient_image(320, 320))
    where = () if server else ("--server", "")
    line = one_error_line(run("generate", "--prompt", "x", "--image", tmp_path / "missing.jpg", *where))
    assert line == f"Error: --image: no such file: {tmp_path / 'missing.jpg'}"
    line = one_error_line(run("generate", "--prompt", "x", "--image", tmp_path / "notes.txt", *where))
    assert line == f"Error: --image: {tmp_path / 'notes.txt'} is not an image; expected a JPEG, PNG or WEBP file"
    line = one_error_line(run("generate", "--prompt", "x", "--image", tmp_path / "first.png",
                              "--tail-image", tmp_path / "notes.txt", *where))
    assert line.startswith("Error: --tail-image: ") and "is not an image" in line


def test_download_saves_a_finished_clip_and_its_thumbnail(run, live_server: LiveServer, tmp_path: Path):
    gen_id = submit(live_server)  # still queued or running: download waits for it
    out = tmp_path / "saved.mp4"
    result = run("download", gen_id, "-o", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (1080x1080, 5 s, with audio) from {gen_id}" in result.stdout
    info = probe(out)
    assert (info.video.width, info.video.height, info.video.frames) == (1080, 1080, 120)
    result = run("download", gen_id, "--thumbnail", "-o", tmp_path / "thumb.jpg")
    assert result.exit_code == 0 and (tmp_path / "thumb.jpg").read_bytes()[:3] == b"\xff\xd8\xff"


def test_download_default_name_and_no_wait(run, live_server: LiveServer, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    slow = submit(live_server, "test/slow")
    line = one_error_line(run("download", slow, "--no-wait"))
    assert f"generation {slow} is still " in line and "without --no-wait" in line
    run("cancel", slow)
    with httpx.Client(base_url=live_server.url, headers=live_server.headers()) as c:
        wait_terminal(c, slow)
    line = one_error_line(run("download", slow))
    assert "Cancelled" in line
    done = submit(live_server)
    assert run("download", done).exit_code == 0
    assert (tmp_path / (done.split(":")[0] + ".mp4")).stat().st_size > 1000


def test_ctrl_c_leaves_the_generation_running_and_says_how_to_fetch_it(run, live_server: LiveServer,
                                                                       tmp_path: Path):
    out = tmp_path / "later.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "clipforge.cli", "generate", "--server", live_server.url, "--api-key",
         live_server.keys[0], "--model", "test/medium", "--prompt", "interrupted", "--aspect-ratio", "1:1",
         "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()
    assert first.startswith("submitted "), first
    gen_id = first.split()[1]
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and f"Generation {gen_id} keeps running on the server" in err
    assert f"clipforge download {gen_id} --server {live_server.url} -o {out}" in err
    assert f"clipforge cancel {gen_id}" in err
    gen = httpx.get(f"{live_server.url}/v2/video/generations/{gen_id}", headers=live_server.headers()).json()
    assert gen["status"] in ("queued", "generating", "completed")
    result = run("download", gen_id, "--server", live_server.url, "-o", out)
    assert result.exit_code == 0, result.output
    assert probe(out).video.frames == 120
