"""The HTTP/1.1 protocol `clipforge serve` runs uvicorn with: httptools, with a cap on request heads
and a deadline for them.

uvicorn's httptools protocol keeps every byte of a request line and its headers until the blank line
that ends them, with no limit (its h11 protocol stops at 16 KiB), so one client that never ends its
headers could fill the api's memory before any clipforge code sees the request. Here the bytes
received while a request head is being read are counted, and past `MAX_HEAD_BYTES` the connection
is answered 431 and closed. Bodies are not counted (the body limit is `RequestContext`'s).

Nor does uvicorn time a request head out: a connection that sends nothing, or a head a byte at a
time, stays open for good, and enough of them use up the process's file descriptors (slowloris).
Here a head must arrive whole within `HEAD_TIMEOUT_SECONDS` of the connection opening or of its first
byte (on a kept-alive connection), else the connection is closed (408 when nothing else is in flight).
A request's body and response are not timed (uploads and event streams may take long).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024  # request line + headers; browsers and SDKs send a few KiB at most
HEAD_TIMEOUT_SECONDS = 30.0  # nginx allows 60 s for client headers; a real client needs milliseconds

_REFUSAL = (b"HTTP/1.1 %s\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n%s")


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing request heads over MAX_HEAD_BYTES (431) or slower than
    HEAD_TIMEOUT_SECONDS (408)."""

    max_head_bytes = MAX_HEAD_BYTES
    head_timeout_seconds = HEAD_TIMEOUT_SECONDS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._in_head, self._head_bytes, self._head_done = True, 0, False
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # Counted after parsing, whole reads only: a read in which a head ends holds body bytes too, and
        # a read in which a head starts may end another request's body. So the head held can pass the
        # cap by up to two reads (uvloop reads 256 KiB at most), never more.
        counts, self._head_done = self._in_head, False
        super().data_received(data)
        if counts and self._in_head and not self._head_done:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse(b"431 Request Header Fields Too Large",
                             f"request line and headers: over {self.max_head_bytes} bytes")

    def on_message_begin(self) -> None:
        self._start_head_timer()  # a head's first byte (a no-op on a new connection: timed since it opened)
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes, self._head_done = False, 0, True
        self._stop_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True  # what follows on this connection is the next request's head
        super().on_message_complete()

    def _start_head_timer(self) -> None:
        if self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.head_timeout_seconds, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head:
            self._refuse(b"408 Request Timeout",
                         f"request line and headers: not received within {self.head_timeout_seconds:g} s")

    def _refuse(self, status: bytes, message: str) -> None:
        self._stop_head_timer()
        if self.transport.is_closing():
            return
        cycle: Any = self.cycle
        if cycle is None or cycle.response_complete:  # never write into another request's response
            body = message.encode()
            self.transport.write(_REFUSAL % (status, len(body), body))
        self.transport.close()
