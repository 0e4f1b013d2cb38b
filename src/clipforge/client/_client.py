"""The synchronous client. `_async_client.py` is this file with `await` added; keep them in step."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from clipforge.client import _constants as c
from clipforge.client._base import (
    BaseClient,
    ImageArg,
    Waiter,
    media_url,
    part_path,
    retry_after,
    transport_words,
)
from clipforge.client.errors import APIConnectionError, APITimeoutError, GenerationFailed
from clipforge.client.types import Generation, GenerationPage

ProgressCallback = Callable[[Generation], Any]


class Client(BaseClient):
    """A clipforge (or hosted AIML API) client.

    `api_key` defaults to $CLIPFORGE_API_KEY, then $AIMLAPI_API_KEY; `base_url` to $CLIPFORGE_BASE_URL,
    then http://127.0.0.1:8000. `transport` replaces the HTTP transport (tests pass httpx.MockTransport).
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout: float | httpx.Timeout | None = c.DEFAULT_TIMEOUT, max_retries: int = c.DEFAULT_MAX_RETRIES,
                 headers: dict[str, str] | None = None, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(base_url, api_key, timeout, max_retries, headers)
        self._http = httpx.Client(timeout=timeout, headers=self._headers, transport=transport,
                                  follow_redirects=True)
        self._sleep = time.sleep

    # -- generations -----------------------------------------------------------------------------
    def generate(self, prompt: str, *, image: ImageArg | None = None, tail_image: ImageArg | None = None,
                 duration: int | None = None, aspect_ratio: str | None = None, negative_prompt: str | None = None,
                 cfg_scale: float | None = None, generate_audio: bool | None = None, seed: int | None = None,
                 model: str | None = None, idempotency_key: str | None = None,
                 extra: dict[str, Any] | None = None) -> GenerationHandle:
        """Submit a generation; returns at once with a handle to `wait()` on and `download()` from.

        `image` / `tail_image`: a file path, an http(s) URL, a data: URI, or the image's bytes.
        `model` defaults to the Kling 2.6 Pro image-to-video id with an image, else text-to-video.
        """
        body = self._create_body(prompt, image, tail_image, duration, aspect_ratio, negative_prompt, cfg_scale,
                                 generate_audio, seed, model, extra)
        key = idempotency_key or self._new_idempotency_key()  # makes the POST safe to retry
        response = self._send("POST", c.GENERATIONS_PATH, json=body, headers={"Idempotency-Key": key},
                              idempotent=True)
        return GenerationHandle(self, self._parse(response))

    def get(self, generation_id: str) -> Generation:
        response = self._send("GET", c.GENERATIONS_PATH, params={"generation_id": generation_id}, idempotent=True)
        return self._parse(response)

    def list(self, *, limit: int = 20, after: str | None = None, status: str | None = None) -> GenerationPage:
        """The newest generations first; pass `page.next_cursor` as `after` for the next page."""
        params = {k: v for k, v in {"limit": limit, "after": after, "status": status}.items() if v is not None}
        return GenerationPage.from_dict(self._send("GET", c.GENERATIONS_PATH, params=params, idempotent=True).json())

    def cancel(self, generation_id: str) -> Generation:
        """Cancel a queued or running generation (ConflictError once it has finished)."""
        return self._parse(self._send("DELETE", self._generation_path(generation_id), idempotent=True))

    def wait(self, generation_id: str, *, on_progress: ProgressCallback | None = None, timeout: float | None = None,
             poll_interval: float | None = None) -> Generation:
        """Poll until done (at the server's Retry-After pace unless `poll_interval` is given).

        Calls `on_progress(generation)` on every change; raises GenerationFailed if it ends in error
        and WaitTimeout after `timeout` seconds.
        """
        waiter = Waiter(timeout, time.monotonic())
        while True:
            response = self._send("GET", c.GENERATIONS_PATH, params={"generation_id": generation_id},
                                  idempotent=True)
            generation = self._parse(response)
            if on_progress is not None and waiter.changed(generation):
                on_progress(generation)
            if waiter.result(generation):
                return generation
            self._sleep(waiter.delay(generation, self._poll_delay(response, poll_interval), time.monotonic()))

    def download(self, generation: Generation | str, path: str | Path, *, variant: str = "video",
                 timeout: float | None = None) -> Path:
        """Write the video (or `variant="thumbnail"`) to `path`, waiting for completion first if needed."""
        gen = generation if isinstance(generation, Generation) else self.get(generation)
        if not gen.done:
            gen = self.wait(gen.id, timeout=timeout)
        elif not gen.succeeded:
            raise GenerationFailed(gen)
        path, part = Path(path), part_path(Path(path))
        response = self._send("GET", media_url(gen, variant), headers={"Accept": "*/*"}, idempotent=True,
                              stream=True)
        try:
            with part.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        finally:
            response.close()
        part.replace(path)
        return path

    # -- transport ------------------------------------------------------------------------------
    def _send(self, method: str, path: str, *, idempotent: bool, json: Any = None, params: dict | None = None,
              headers: dict[str, str] | None = None, stream: bool = False) -> httpx.Response:
        """One request with retries: connection errors, 429 and 503 (Retry-After honoured), idempotent only."""
        url = self._url(path)
        request = self._http.build_request(method, url, json=json, params=params,
                                           headers=self._request_headers(url, headers))
        retries = self.retry.max_retries if idempotent else 0
        for attempt in range(retries + 1):
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                if attempt < retries:
                    self._sleep(self.retry.delay(attempt))
                    continue
                kind = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
                raise kind(f"{method} {url}: {transport_words(exc)}", request_url=url) from exc
            if response.is_success:
                return response
            response.read()
            if attempt < retries and self._should_retry(response):
                response.close()
                self._sleep(self.retry.delay(attempt, retry_after(response.headers)))
                continue
            raise self._error(response)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GenerationHandle:
    """A submitted generation: `wait()`, `download()`, `cancel()`; `generation` is its last seen state."""

    def __init__(self, client: Client, generation: Generation) -> None:
        self.client, self.generation = client, generation

    @property
    def id(self) -> str:
        return self.generation.id

    def refresh(self) -> Generation:
        self.generation = self.client.get(self.id)
        return self.generation

    def wait(self, *, on_progress: ProgressCallback | None = None, timeout: float | None = None,
             poll_interval: float | None = None) -> Generation:
        self.generation = self.client.wait(self.id, on_progress=on_progress, timeout=timeout,
                                           poll_interval=poll_interval)
        return self.generation

    def download(self, path: str | Path, *, variant: str = "video", timeout: float | None = None) -> Path:
        if not self.generation.done:
            self.wait(timeout=timeout)
        return self.client.download(self.generation, path, variant=variant, timeout=timeout)

    def cancel(self) -> Generation:
        self.generation = self.client.cancel(self.id)
        return self.generation

    def __repr__(self) -> str:
        return f"GenerationHandle(id={self.id!r}, status={self.generation.status!r})"
