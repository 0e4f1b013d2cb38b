"""Holes found by attacking a real `clipforge serve` over loopback, closed and kept closed."""

from __future__ import annotations

import http.client
import json
import socket

from helpers import LiveServer


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
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
        except OSError:
            pass
        return answer


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
