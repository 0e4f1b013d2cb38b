"""HTTP to a provider: auth header, retries with capped backoff that honour Retry-After, error mapping.

One place decides what is transient: connection errors, timeouts, 5xx and 429 are retried up to
`max_retries` times and then raised as `EngineUnavailable` (the job may fail over); any other 4xx is the
provider refusing the request, raised at once as `EngineError` with the provider's own message.
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
Sleep = Callable[[float], None]


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (a number; HTTP dates are not used by these providers)."""
    value = response.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


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
        self.max_retries, self.backoff = max_retries, backoff
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

    def request(self, method: str, path: str, sleep: Sleep = time.sleep, **kwargs: Any) -> httpx.Response:
        """The provider's successful (2xx) answer; EngineError or EngineUnavailable otherwise."""
        for attempt in range(self.max_retries + 1):
            wait, problem = self._try(method, path, kwargs)
            if problem is None:
                assert isinstance(wait, httpx.Response)
                return wait
            if attempt == self.max_retries:
                raise EngineUnavailable(self.mask(f"{self.name}: {problem} (gave up after {attempt + 1} tries)"))
            sleep(self._delay(attempt, wait if isinstance(wait, float) else None))
        raise AssertionError("unreachable")

    def _try(self, method: str, path: str, kwargs: dict[str, Any]) -> tuple[Any, str | None]:
        """(response, None) on success; (retry-after or None, problem) when worth retrying."""
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
            return min(retry_after, 300.0)
        return min(MAX_BACKOFF, self.backoff * 2 ** attempt) * random.uniform(0.5, 1.0)

    def close(self) -> None:
        self.client.close()
