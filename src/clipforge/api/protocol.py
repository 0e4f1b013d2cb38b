"""The HTTP/1.1 protocol `clipforge serve` runs uvicorn with: httptools, with a cap on request heads.

uvicorn's httptools protocol keeps every byte of a request line and its headers until the blank line
that ends them, with no limit (its h11 protocol stops at 16 KiB), so one client that never ends its
headers could fill the api's memory before any clipforge code sees the request. Here the bytes
received while a request head is being read are counted, and past `MAX_HEAD_BYTES` the connection
is answered 431 and closed. Bodies are not counted (the body limit is `RequestContext`'s).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024  # request line + headers; browsers and SDKs send a few KiB at most

_431 = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"connection: close\r\ncontent-length: %d\r\n\r\n%s")


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing request heads over MAX_HEAD_BYTES with a 431."""

    max_head_bytes = MAX_HEAD_BYTES

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._in_head, self._head_bytes, self._head_done = True, 0, False
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        # Counted after parsing, whole reads only: a read in which a head ends holds body bytes too, and
        # a read in which a head starts may end another request's body. So the head held can pass the
        # cap by up to two reads (uvloop reads 256 KiB at most), never more.
        counts, self._head_done = self._in_head, False
        super().data_received(data)
        if counts and self._in_head and not self._head_done:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse_head()

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes, self._head_done = False, 0, True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True  # what follows on this connection is the next request's head
        super().on_message_complete()

    def _refuse_head(self) -> None:
        if self.transport.is_closing():
            return
        cycle: Any = self.cycle
        if cycle is None or cycle.response_complete:  # never write into another request's response
            message = f"request line and headers: over {self.max_head_bytes} bytes".encode()
            self.transport.write(_431 % (len(message), message))
        self.transport.close()

