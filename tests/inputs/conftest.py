"""Fixtures for the clipforge.inputs tests: tiny images made on the fly and a local HTTP server."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

Route = Callable[[BaseHTTPRequestHandler], None]


@pytest.fixture(scope="session")
def images() -> dict[str, bytes]:
    """A 320x400 image in each accepted format."""
    out = {}
    for fmt in ("jpeg", "png", "webp"):
        buf = io.BytesIO()
        Image.new("RGB", (320, 400), (200, 40, 40)).save(buf, fmt.upper())
        out[fmt] = buf.getvalue()
    return out


class LocalServer:
    """http.server on 127.0.0.1 in a thread; routes map a path to a handler function."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.requests.append((self.path, dict(self.headers)))
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                try:
                    route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def serve(self, path: str, body: bytes, content_length: bool = True, status: int = 200) -> None:
        def route(h: BaseHTTPRequestHandler) -> None:
            h.send_response(status)
            h.send_header("Content-Type", "application/octet-stream")
            if content_length:
                h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        self.routes[path] = route

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        def route(h: BaseHTTPRequestHandler) -> None:
            h.send_response(status)
            h.send_header("Location", location)
            h.send_header("Content-Length", "0")
            h.end_headers()
        self.routes[path] = route

    def endless(self, path: str) -> None:
        """A body with no Content-Length that never ends (stops at 64 MiB as a safety net)."""
        def route(h: BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            h.end_headers()
            chunk = b"\xff" * 65536
            for _ in range(1024):
                h.wfile.write(chunk)
        self.routes[path] = route

    def slow(self, path: str, seconds: float) -> None:
        def route(h: BaseHTTPRequestHandler) -> None:
            time.sleep(seconds)
            h.send_response(200)
            h.send_header("Content-Length", "0")
            h.end_headers()
        self.routes[path] = route


@pytest.fixture
def server() -> Iterator[LocalServer]:
    srv = LocalServer()
    srv.thread.start()
    try:
        yield srv
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()
