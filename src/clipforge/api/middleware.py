"""Request ids and the body size limit, as plain ASGI middleware."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def client_request_id(raw: bytes) -> str | None:
    """The client's `X-Request-Id` (its first 100 characters) when it is printable ASCII; None
    otherwise, and the caller makes a fresh id: it is echoed in headers, logs and error bodies."""
    if not raw or not all(0x20 < b < 0x7F for b in raw):
        return None
    return raw[:100].decode("ascii")


class RequestContext:
    """Give every request an id (from `X-Request-Id` or new) and refuse bodies over `max_body`."""

    def __init__(self, app: Callable, max_body: int) -> None:
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        request_id = client_request_id(headers.get(b"x-request-id", b"")) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        length = headers.get(b"content-length")
        if length and length.isdigit() and int(length) > self.max_body:
            return await self._too_large(scope, send, request_id)
        seen = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise BodyTooLarge()
            return message

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except BodyTooLarge:
            await self._too_large(scope, send, request_id)

    async def _too_large(self, scope: Scope, send: Send, request_id: str) -> None:
        message = f"body: request body is larger than {self.max_body // (1024 * 1024)} MB"
        timestamp = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
        body = json.dumps({"statusCode": 413, "message": message, "path": scope["path"], "requestId": request_id,
                           "timestamp": timestamp, "error": {"message": message, "type": "invalid_request_error",
                                                             "param": "body", "code": "too_large"}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"x-request-id", request_id.encode())]})
        await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    pass
