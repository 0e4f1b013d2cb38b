"""HTTP to a provider: auth header, retries with capped backoff that honour Retry-After, error mapping.

One place decides what is transient: connection errors, timeouts, 5xx and 429 are retried up to
`max_retries` times and then raised as `EngineUnavailable` (the job may fail over); any other 4xx is the
provider refusing the request, raised at once as `EngineError` with the provider's own message.

A request made for a job carries the job's deadline (a `time.monotonic()` value): no try starts after
it, no try's timeout reaches past it, and no wait (backoff or `Retry-After`) sleeps into it. A wait the
time left cannot cover ends the request at once, as `EngineUnavailable`, saying what the provider asked
for and how long the job had left, rather than sleeping past the job's end.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from typing import Any

import httpx

from clipforge.core.errors import EngineError, EngineUnavailable

UNSAFE_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
MAX_BACKOFF = 30.0
MAX_RETRY_AFTER = 300.0  # seconds: the longest one Retry-After may make a request wait
Sleep = Callable[[float], None]


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (a number; HTTP dates are not used by these providers)."""
    value = response.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def seconds(value: float) -> str:
    """A duration for a message: whole seconds from 10 s up, tenths below."""
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def error_text(response: httpx.Response, limit: int = 500) -> str:
    """The provider's message from an error body: `message`, `detail`, `error`, `title`, else the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:limit] or f"HTTP {response.status_code}"
    return (_message_in(body) or f"HTTP {response.status_code}")[:limit]


def _message_in(body: Any) -> str | None:
    if isinstance(body, str):
        return body
    if isinstance(body, list):
        parts = [_message_in(item) for item in body]
        return "; ".join(p for p in parts if p) or None
    if not isinstance(body, dict):
        return None
    for key in ("message", "detail", "error", "msg", "title"):
        if body.get(key):
            found = _message_in(body[key])
            if found:
                return found
    return None


def clean_text(text: str) -> str:
    """`text` with control characters (but tab and newline) and lone surrogates replaced by U+FFFD."""
    return UNSAFE_TEXT.sub("\ufffd", text)


def clean_json(value: Any) -> Any:
    """A provider's JSON (usage, metrics) with every string, key or value, passed through clean_text."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v) for v in value]
    return value


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host.lower(), url.port or default


class ProviderHTTP:
    """A shared, thread-safe client for one provider's API; every message it raises has the key masked."""

    def __init__(self, name: str, base_url: str, auth_header: str, secret: str, *, timeout: float = 30.0,
                 max_retries: int = 4, backoff: float = 1.0, transport: httpx.BaseTransport | None = None) -> None:
        self.name, self.base_url, self.secret = name, base_url.rstrip("/"), secret
        self.max_retries, self.backoff, self.timeout = max_retries, backoff, timeout
        self.client = httpx.Client(timeout=timeout, transport=transport, trust_env=False,
                                   headers={"Authorization": auth_header, "User-Agent": "clipforge/0.1"})

    def url(self, path: str) -> str:
        """`base_url` + path; an absolute URL (a provider's status or cancel link) only on base_url's own
        origin, since the key goes with it: a link elsewhere is refused, never sent the key."""
        if not path.lower().startswith(("http://", "https://")):
            return f"{self.base_url}{path}"
        try:
            link = httpx.URL(path)
        except (httpx.InvalidURL, ValueError):
            raise EngineError(f"{self.name}: the provider gave an invalid API link") from None
        if _origin(link) != _origin(httpx.URL(self.base_url)):
            raise EngineError(f"{self.name}: the provider gave an API link on another host ({link.host}); "
                              "refusing to send the key there")
        return path

    def on_base(self, link: str) -> bool:
        """Whether a provider's absolute link is on base_url's origin (so the key may go with it)."""
        try:
            return _origin(httpx.URL(link)) == _origin(httpx.URL(self.base_url))
        except (httpx.InvalidURL, ValueError):
            return False

    def mask(self, text: str) -> str:
        """Provider text made safe to store and show: the key masked, control characters and lone
        surrogates (which PostgreSQL refuses and JSON responses cannot carry) replaced."""
        return clean_text(text.replace(self.secret, "***") if self.secret else text)

    def request(self, method: str, path: str, sleep: Sleep = time.sleep, deadline: float | None = None,
                **kwargs: Any) -> httpx.Response:
        """The provider's successful (2xx) answer; EngineError or EngineUnavailable otherwise. With a
        `deadline` (time.monotonic()), nothing is sent, waited for or slept through past it."""
        problem: str | None = None
        for attempt in range(self.max_retries + 1):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                before = f"{problem}; the job ran out of time before another try" if problem else \
                    "the job ran out of time before the request was sent"
                raise EngineUnavailable(self.mask(f"{self.name}: {before} (job_timeout_seconds)"))
            wait, problem = self._try(method, path, kwargs, left)
            if problem is None:
                assert isinstance(wait, httpx.Response)
                return wait
            if attempt == self.max_retries:
                raise EngineUnavailable(self.mask(f"{self.name}: {problem} (gave up after {attempt + 1} tries)"))
            retry_after = wait if isinstance(wait, float) else None
            delay = self._delay(attempt, retry_after)
            if deadline is not None and delay >= (left := deadline - time.monotonic()):
                asked = (f"the provider asked to retry after {seconds(delay)} s" if retry_after is not None
                         else f"the next try is due in {seconds(delay)} s")
                raise EngineUnavailable(self.mask(f"{self.name}: {problem}; {asked} and the job has "
                                                  f"{seconds(max(0.0, left))} s left (job_timeout_seconds)"))
            sleep(delay)
        raise AssertionError("unreachable")

    def _try(self, method: str, path: str, kwargs: dict[str, Any], left: float | None = None) -> tuple[Any, str | None]:
        """(response, None) on success; (retry-after or None, problem) when worth retrying. `left`: the
        seconds the job has left, which bounds this try's connect and reads."""
        if left is not None:
            kwargs = {**kwargs, "timeout": httpx.Timeout(max(0.01, min(self.timeout, left)))}
        try:
            response = self.client.request(method, self.url(path), **kwargs)
        except httpx.TransportError as exc:
            return None, f"cannot reach {httpx.URL(self.url(path)).host}: {type(exc).__name__}: {exc}"
        if response.is_success:
            return response, None
        message = error_text(response)
        if response.status_code in TRANSIENT_STATUS:
            what = "rate limited" if response.status_code == 429 else "provider error"
            return retry_after_seconds(response), f"{what} (HTTP {response.status_code}): {message}"
        raise EngineError(self.mask(f"{self.name}: {message} (HTTP {response.status_code})"))

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER)
        return min(MAX_BACKOFF, self.backoff * 2 ** attempt) * random.uniform(0.5, 1.0)

    def close(self) -> None:
        self.client.close()
