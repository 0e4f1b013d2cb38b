"""Bringing a provider's result home: streamed to a file, size-capped, time-limited, SSRF-guarded.

A link on the configured upstream's own host (or on a host the operator listed in `media_hosts`) is
trusted; any other link passes clipforge's SSRF guard on every redirect hop and is fetched from the
address that was checked. The provider's key is never sent with a download.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from clipforge.core.errors import EngineError, InvalidInput
from clipforge.inputs.fetch import REDIRECT_CODES, check_public_url, pinned_request


class DownloadPolicy:
    """Where downloads may go and how much they may take."""

    def __init__(self, trusted_hosts: set[str], allow_private: bool = False, max_bytes: int = 1 << 30,
                 timeout: float = 300.0, max_redirects: int = 5) -> None:
        self.trusted_hosts = {h.lower() for h in trusted_hosts}
        self.allow_private, self.max_bytes, self.timeout = allow_private, max_bytes, timeout
        self.max_redirects = max_redirects

    def trusted(self, url: httpx.URL) -> bool:
        host = url.host.lower()
        netloc = f"{host}:{url.port}" if url.port else host
        return netloc in self.trusted_hosts or host in self.trusted_hosts or any(
            h.startswith("*.") and host.endswith(h[1:]) for h in self.trusted_hosts)


def download(client: httpx.Client, url: str, dest: Path, policy: DownloadPolicy, engine: str,
             job_deadline: float | None = None) -> int:
    """Stream `url` into `dest`; returns the byte count. EngineError naming the engine on any failure.
    It ends by `download_timeout_seconds`, or by the job's deadline (time.monotonic()) when that is sooner."""
    deadline = time.monotonic() + policy.timeout
    slow = f"{engine}: downloading the result took over {policy.timeout:g} s (download_timeout_seconds)"
    if job_deadline is not None and job_deadline < deadline:
        deadline = job_deadline
        slow = f"{engine}: downloading the result ran past the job's time limit (job_timeout_seconds)"
    current = url
    for _ in range(policy.max_redirects + 1):
        if time.monotonic() >= deadline:
            raise EngineError(slow)
        request = _guarded_request(current, policy, engine)
        next_url = _fetch(client, request, current, dest, policy, engine, deadline, slow)
        if next_url is None:
            return dest.stat().st_size
        current = next_url
    raise EngineError(f"{engine}: the result link redirected more than {policy.max_redirects} times")


def _guarded_request(url: str, policy: DownloadPolicy, engine: str) -> httpx.Request:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise EngineError(f"{engine}: the provider returned an invalid result link ({exc})") from exc
    if parsed.scheme in ("http", "https") and policy.trusted(parsed):
        return httpx.Request("GET", parsed, headers={"User-Agent": "clipforge/0.1"})
    try:
        checked = check_public_url(url, "video_url", policy.allow_private)
    except InvalidInput as exc:
        raise EngineError(f"{engine}: refused to download the result: {exc.message} (list the host in "
                          f"[engines.{engine}] media_hosts to trust it)") from exc
    return pinned_request(checked, checked.addresses[0])


def _fetch(client: httpx.Client, request: httpx.Request, url: str, dest: Path, policy: DownloadPolicy,
           engine: str, deadline: float, slow: str) -> str | None:
    """Write the body to dest, or return the redirect target."""
    # No single connect or read may outlast the whole download's deadline.
    remaining = max(0.05, deadline - time.monotonic())
    timeout = httpx.Timeout(min(client.timeout.read or remaining, remaining))
    try:
        with client.stream(request.method, request.url, headers=request.headers,
                           extensions=request.extensions, timeout=timeout) as response:
            if response.status_code in REDIRECT_CODES and response.headers.get("location"):
                return str(httpx.URL(url).join(response.headers["location"]))
            if not response.is_success:
                raise EngineError(f"{engine}: downloading the result failed: HTTP {response.status_code}")
            _check_length(response, policy, engine)
            _write(response, dest, policy, engine, deadline, slow)
            return None
    except httpx.TimeoutException as exc:
        if time.monotonic() >= deadline:
            raise EngineError(slow) from exc
        raise EngineError(f"{engine}: downloading the result failed: {type(exc).__name__}: {exc}") from exc
    except httpx.HTTPError as exc:
        raise EngineError(f"{engine}: downloading the result failed: {type(exc).__name__}: {exc}") from exc


def _check_length(response: httpx.Response, policy: DownloadPolicy, engine: str) -> None:
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > policy.max_bytes:
        raise EngineError(f"{engine}: the result is {int(length)} bytes, over the {policy.max_bytes}-byte "
                          "download limit (max_download_bytes)")


def _write(response: httpx.Response, dest: Path, policy: DownloadPolicy, engine: str, deadline: float,
           slow: str) -> None:
    written = 0
    with open(dest, "wb") as out:
        # Chunks as they arrive (no chunk size: a sized iterator waits to fill 64 KiB, so a server
        # trickling bytes would never reach the deadline check); each read is bounded by the read timeout.
        for chunk in response.iter_bytes():
            written += len(chunk)
            if written > policy.max_bytes:
                raise EngineError(f"{engine}: the result is over the {policy.max_bytes}-byte download limit "
                                  "(max_download_bytes)")
            if time.monotonic() > deadline:
                raise EngineError(slow)
            out.write(chunk)

