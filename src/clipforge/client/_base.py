"""What the sync and async clients share: configuration, requests, retries, parsing. No I/O here."""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import errno
import os
import random
import re
import socket
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from clipforge.client import _constants as c
from clipforge.client.errors import APIStatusError, ClipforgeClientError, GenerationFailed, WaitTimeout, status_error
from clipforge.client.types import Generation

ImageArg = str | os.PathLike | bytes

_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter; a server's Retry-After wins when it is sane."""

    max_retries: int = c.DEFAULT_MAX_RETRIES
    initial_delay: float = c.INITIAL_RETRY_DELAY
    max_delay: float = c.MAX_RETRY_DELAY
    max_retry_after: float = c.MAX_RETRY_AFTER

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `retry` (0-based)."""
        if retry_after is not None and 0 <= retry_after <= self.max_retry_after:
            return retry_after
        backoff = min(self.initial_delay * 2.0**retry, self.max_delay)
        return backoff * (1 - 0.25 * random.random())


def retry_after(headers: httpx.Headers) -> float | None:
    """`retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
    try:
        return float(headers["retry-after-ms"]) / 1000
    except (KeyError, ValueError):
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds()) if when and when.tzinfo else None


def image_ref(image: ImageArg | None, name: str) -> str | None:
    """A path, URL, data URI or raw bytes, as the API takes it (a URL or a data URI)."""
    if image is None:
        return None
    if isinstance(image, str) and image.startswith(("http://", "https://", "data:")):
        return image
    if isinstance(image, bytes | bytearray):
        data = bytes(image)
    else:
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"{name}: no such file: {path}")
        data = path.read_bytes()
    mime = next((m for magic, m in _MAGIC if data.startswith(magic)), None)
    if mime is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        mime = "image/webp"
    if mime is None:
        what = f"{image}" if not isinstance(image, bytes | bytearray) else f"{len(data)} bytes"
        raise ClipforgeClientError(f"{name}: {what} is not an image (JPEG, PNG or WEBP expected)")
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


# What an OS error number means to a person ([Errno -2] is getaddrinfo's EAI_NONAME, and so on).
_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused: nothing is listening there (is the server running?)",
    errno.ECONNRESET: "the server closed the connection",
    errno.ETIMEDOUT: "the connection timed out",
    errno.EHOSTUNREACH: "no route to that host",
    errno.ENETUNREACH: "the network is unreachable",
    errno.EADDRNOTAVAIL: "that address is not available here",
    socket.EAI_NONAME: "the host name was not found (DNS)",
    socket.EAI_AGAIN: "the host name could not be looked up (DNS did not answer; try again)",
    getattr(socket, "EAI_NODATA", -5): "the host name has no address (DNS)",
    socket.EAI_SERVICE: "the port is not valid",
}


def transport_words(exc: BaseException) -> str:
    """A transport failure in words: the OS error behind it, else its message without `[Errno N]` codes."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno in _ERRNO_WORDS:
            return _ERRNO_WORDS[cause.errno]
        cause = cause.__cause__ or cause.__context__
    text = str(exc) or type(exc).__name__
    match = re.search(r"\[Errno (-?\d+)\]\s*", text)
    if match and int(match.group(1)) in _ERRNO_WORDS:
        return _ERRNO_WORDS[int(match.group(1))]
    return re.sub(r"\[Errno -?\d+\]\s*", "", text)


class BaseClient:
    """Configuration and the pure parts of every call; subclasses add the I/O."""

    def __init__(self, base_url: str | None, api_key: str | None, timeout: float | httpx.Timeout | None,
                 max_retries: int, headers: dict[str, str] | None) -> None:
        self.base_url = (base_url or os.environ.get(c.BASE_URL_ENV) or c.DEFAULT_BASE_URL).rstrip("/")
        key = api_key or next((os.environ[e] for e in c.API_KEY_ENVS if os.environ.get(e)), None)
        if not key:
            raise ClipforgeClientError(f"no API key: pass api_key= or set {' or '.join(c.API_KEY_ENVS)}")
        self.api_key = key
        self.retry = RetryPolicy(max_retries=max_retries)
        self.timeout = timeout
        self._headers = {"User-Agent": c.USER_AGENT, "Accept": "application/json", **(headers or {})}
        self._origin = urllib.parse.urlsplit(self.base_url)[:2]

    def _request_headers(self, url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The key goes only to the API's own origin (media URLs may be signed links elsewhere)."""
        headers = dict(extra or {})
        if urllib.parse.urlsplit(url)[:2] in (self._origin, ("", "")):
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    @staticmethod
    def _generation_path(generation_id: str) -> str:
        return f"{c.GENERATIONS_PATH}/{urllib.parse.quote(generation_id, safe='')}"

    @staticmethod
    def _create_body(prompt: str, image: ImageArg | None, tail_image: ImageArg | None, duration: int | None,
                     aspect_ratio: str | None, negative_prompt: str | None, cfg_scale: float | None,
                     generate_audio: bool | None, seed: int | None, model: str | None,
                     extra: dict[str, Any] | None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model or (c.I2V_MODEL if image is not None else c.T2V_MODEL),
                                "prompt": prompt, "image_url": image_ref(image, "image"),
                                "tail_image_url": image_ref(tail_image, "tail_image"), "duration": duration,
                                "aspect_ratio": aspect_ratio, "negative_prompt": negative_prompt,
                                "cfg_scale": cfg_scale, "generate_audio": generate_audio, "seed": seed}
        return {k: v for k, v in {**body, **(extra or {})}.items() if v is not None}

    @staticmethod
    def _new_idempotency_key() -> str:
        return f"clipforge-{uuid.uuid4()}"

    @staticmethod
    def _should_retry(response: httpx.Response) -> bool:
        return response.status_code in c.RETRY_STATUSES

    @staticmethod
    def _error(response: httpx.Response) -> APIStatusError:
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        message, field = None, None
        if isinstance(body, dict):
            error = body.get("error") if isinstance(body.get("error"), dict) else {}
            detail = body.get("detail") if isinstance(body.get("detail"), list) else []
            message = body.get("message") or error.get("message") or (detail[0].get("msg") if detail else None)
            field = error.get("param") or (".".join(str(p) for p in detail[0].get("loc", [])[1:]) if detail else None)
        message = str(message or body or response.reason_phrase or "error")
        request_id = response.headers.get("x-request-id") or (body.get("requestId") if isinstance(body, dict) else None)
        return status_error(response.status_code)(message, status_code=response.status_code, body=body,
                                                  request_id=request_id, field=field or None,
                                                  retry_after=retry_after(response.headers))

    @staticmethod
    def _parse(response: httpx.Response) -> Generation:
        return Generation.from_dict(response.json())

    @staticmethod
    def _poll_delay(response: httpx.Response, poll_interval: float | None) -> float:
        if poll_interval is not None:
            return max(0.0, poll_interval)
        hint = retry_after(response.headers)
        return min(max(hint if hint is not None else c.DEFAULT_POLL_INTERVAL, c.MIN_POLL_INTERVAL),
                   c.MAX_POLL_INTERVAL)


class Waiter:
    """The bookkeeping of one wait(): progress changes, the end, the deadline."""

    def __init__(self, timeout: float | None, now: float) -> None:
        self.timeout = timeout
        self.deadline = None if timeout is None else now + timeout
        self._last: tuple | None = None

    def changed(self, generation: Generation) -> bool:
        key = (generation.status, generation.progress, generation.stage, generation.queue_position)
        changed, self._last = key != self._last, key
        return changed

    @staticmethod
    def result(generation: Generation) -> Generation | None:
        """The generation when it is done and succeeded; GenerationFailed when it failed; else None."""
        if not generation.done:
            return None
        if not generation.succeeded:
            raise GenerationFailed(generation)
        return generation

    def delay(self, generation: Generation, delay: float, now: float) -> float:
        if self.deadline is None:
            return delay
        left = self.deadline - now
        if left <= 0:
            raise WaitTimeout(generation, self.timeout or 0.0)
        return min(delay, left)


def media_url(generation: Generation, variant: str) -> str:
    urls = {"video": generation.video_url, "thumbnail": generation.thumbnail_url}
    if variant not in urls:
        raise ValueError(f"variant: must be one of {', '.join(urls)}, got {variant!r}")
    if not urls[variant]:
        raise ClipforgeClientError(f"generation {generation.id} has no {variant} URL (status {generation.status})")
    return urls[variant]


def part_path(path: Path) -> Path:
    """Downloads are written here first, then renamed, so a path never holds half a file."""
    return path.with_name(f".{path.name}.part")
