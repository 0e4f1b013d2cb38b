"""Holes found by attacking a real `clipforge serve` over loopback, closed and kept closed."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from clipforge.api.protocol import BoundedHttpToolsProtocol
from helpers import LiveServer, free_port


def send_head_forever(server: LiveServer, total: int) -> bytes:
    """Send a request head with one header of `total` bytes (never ending it) and return the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ")
        chunk = b"a" * 65536
        try:
            for _ in range(total // len(chunk)):
                sock.sendall(chunk)
        except OSError:
            pass  # the server closed the connection on us: what we want
        return read_all(sock)


def test_an_endless_request_head_is_refused_with_431(live_server: LiveServer):
    answer = send_head_forever(live_server, 8 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"request line and headers" in answer


def test_bodies_and_keep_alive_requests_are_not_counted_as_head(live_server: LiveServer):
    conn = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=30)
    try:
        body = json.dumps({"model": "no-such-model", "prompt": "a", "padding": "x" * (2 * 1024 * 1024)})
        for _ in range(3):  # the same connection: the second head follows a 2 MB body
            conn.request("POST", "/v2/video/generations", body=body,
                         headers={**live_server.headers(0), "Content-Type": "application/json",
                                  "X-Some-Header": "y" * 8000})
            response = conn.getresponse()
            response.read()
            assert response.status == 400, response.status  # unknown model: read, parsed, refused
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
    finally:
        conn.close()


class QuickHeads(BoundedHttpToolsProtocol):
    head_timeout_seconds = 1.0


async def slow_app(scope, receive, send) -> None:  # noqa: ANN001
    """Reads the whole body, then takes 2.5 s (longer than a head may) before answering."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await asyncio.sleep(2.5)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"done"})


@pytest.fixture(scope="module")
def quick_server() -> Iterator[int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(slow_app, host="127.0.0.1", port=port, http=QuickHeads,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "test server did not start"
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def read_all(sock: socket.socket) -> bytes:
    answer = b""
    try:
        while data := sock.recv(65536):
            answer += data
    except OSError:
        pass
    return answer


@pytest.mark.parametrize("sent", [b"", b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "])
def test_a_connection_that_never_finishes_its_head_is_closed(quick_server: int, sent: bytes):
    """Slowloris: silent connections and heads sent a byte at a time were held open for good."""
    with socket.create_connection(("127.0.0.1", quick_server), timeout=20) as sock:
        sock.sendall(sent)
        started = time.monotonic()
        answer = read_all(sock)  # returns when the server closes the connection
    assert time.monotonic() - started < 15  # closed by the 1 s head deadline, not by our 20 s timeout
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer[:200]


def test_slow_requests_and_kept_alive_connections_are_not_cut(quick_server: int):
    """Only heads are timed: a request whose answer takes longer than a head may, twice on one
    connection with a pause between them, is answered both times."""
    conn = http.client.HTTPConnection("127.0.0.1", quick_server, timeout=20)
    try:
        for _ in range(2):
            conn.request("POST", "/", body=b"x" * 100_000)
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b"done")
            time.sleep(0.5)
    finally:
        conn.close()


def test_a_media_file_deleted_while_it_is_being_served_is_still_served_whole(tmp_path):
    """DELETE (or expiry) between a download's headers and its body left a 200 with no body: the
    file is now opened before the answer starts, and an unlinked open file stays readable."""
    import os

    import httpx

    from clipforge.api.files import opened_file_response

    data = os.urandom(300_000)
    path = tmp_path / "output.mp4"
    for headers, expected_status, expected in (({}, 200, data), ({"Range": "bytes=1000-1999"}, 206, data[1000:2000])):
        path.write_bytes(data)
        response = opened_file_response(path, media_type="video/mp4")
        assert response is not None
        path.unlink()  # the delete lands after the handler answered, before the body is sent

        async def fetch(app=response, headers=headers) -> httpx.Response:  # noqa: ANN001
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                return await c.get("/", headers=headers)

        got = asyncio.run(fetch())
        assert (got.status_code, got.content) == (expected_status, expected)
        with pytest.raises(OSError):
            os.fstat(response._fd)  # closed once the response ended
    assert opened_file_response(path, media_type="video/mp4") is None  # already gone: the caller's 404
