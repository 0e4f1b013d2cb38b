"""The CLI facing a hostile (or compromised, or relaying) server: what it prints cannot drive the terminal."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from clipforge.cli import main

# ESC sequences: clear the screen, set the window title, and an OSC 8 hyperlink; then a BEL and a C1 CSI.
EVIL = "\x1b[2J\x1b]0;owned\x07\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\ \x9b31m"


class Hostile(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        if "bad" in self.path:
            status, body = 400, {"statusCode": 400, "message": f"prompt: {EVIL}",
                                 "error": {"message": f"prompt: {EVIL}", "type": "invalid_request_error"}}
        else:
            status, body = 200, {"id": f"gen{EVIL}", "object": "video.generation", "status": "error",
                                 "progress": 0, "error": {"name": f"Failed{EVIL}", "message": f"upstream said {EVIL}"},
                                 "prompt": EVIL}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_DELETE = do_GET  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("args", [["status", "some-id"], ["status", "bad-id"], ["download", "some-id", "--no-wait"],
                                  ["cancel", "bad-id"]])
def test_server_text_reaches_the_terminal_without_control_characters(hostile: str, args: list[str]):
    result = CliRunner().invoke(main, [*args, "--server", hostile, "--api-key", "k"])
    out = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "owned" in out or "upstream said" in out or "prompt:" in out, out  # the text is shown...
    assert not any(ch in out for ch in "\x1b\x07\x9b"), repr(out)  # ...but none of its control characters
    assert "\\x1b" in out  # visibly escaped
