"""`clipforge webhook-secret [--rotate]` against a live server, through click's runner."""

from __future__ import annotations

import json

import httpx
from click.testing import CliRunner

from clipforge.cli import main
from helpers import LiveServer, free_port


def run(*args: str) -> object:
    return CliRunner().invoke(main, ["webhook-secret", *args], catch_exceptions=False)


def test_webhook_secret_prints_rotates_and_reports_errors(live_server: LiveServer):
    server = ["--server", live_server.url, "--api-key", live_server.keys[0]]
    shown = run(*server)
    assert shown.exit_code == 0, shown.output
    secret = shown.stdout.strip()
    assert secret.startswith("whsec_")
    api = httpx.get(live_server.url + "/v1/webhooks/secret", headers=live_server.headers(0)).json()["secret"]
    assert api == secret
    rotated = run("--rotate", "--json", *server)
    assert rotated.exit_code == 0, rotated.output
    body = json.loads(rotated.stdout)
    assert body["rotated"] is True and body["secret"].startswith("whsec_") and body["secret"] != secret
    assert run(*server).stdout.strip() == body["secret"]

    bad = run("--server", live_server.url, "--api-key", "wrong-key")
    assert bad.exit_code == 1 and "Error: HTTP 401" in bad.stderr
    down = run("--server", f"http://127.0.0.1:{free_port()}", "--api-key", "k")
    assert down.exit_code == 1 and "Error: cannot reach the server" in down.stderr
