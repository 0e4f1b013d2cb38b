"""The asynchronous client: `_client.py` with `await` added; keep them in step."""

from __future__ import annotations

import asyncio
import inspect
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


class AsyncClient(BaseClient):
    """The async twin of `Client`: the same methods, awaited.

    `api_key` defaults to $CLIPFORGE_API_KEY, then $AIMLAPI_API_KEY; `base_url` to $CLIPFORGE_BASE_URL,
    then http://127.0.0.1:8000. `transport` replaces the HTTP transport (tests pass httpx.MockTransport).
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout: float | httpx.Timeout | None = c.DEFAULT_TIMEOUT, max_retries: int = c.DEFAULT_MAX_RETRIES,
                 headers: dict[str, str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(base_url, api_key, timeout, max_retries, headers)
        self._http = httpx.AsyncClient(timeout=timeout, headers=self._headers, transport=transport,
                                  follow_redirects=True)
        self._sleep = asyncio.sleep

    # -- generations -----------------------------------------------------------------------------
    async def generate(self, prompt: str, *, image: ImageArg | None = None,
                       tail_image: ImageArg | None = None, duration: int | None = None,
                       aspect_ratio: str | None = None, negative_prompt: str | None = None,
                       cfg_scale: float | None = None, generate_audio: bool | None = None, seed: int | None = None,
                       model: str | None = None, idempotency_key: str | None = None,
                       extra: dict[str, Any] | None = None) -> AsyncGenerationHandle:
        """Submit a generation; returns at once with a handle to `wait()` on and `download()` from.

        `image` / `tail_image`: a file path, an http(s) URL, a data: URI, or the image's bytes.
        `model` defaults to the Kling 2.6 Pro image-to-video id with an image, else text-to-video.
        """
        body = self._create_body(prompt, image, tail_image, duration, aspect_ratio, negative_prompt, cfg_scale,
                                 generate_audio, seed, model, extra)
        key = idempotency_key or self._new_idempotency_key()  # makes the POST safe to retry
        response = await self._send("POST", c.GENERATIONS_PATH, json=body, headers={"Idempotency-Key": key},
                                    idempotent=True)
        return AsyncGenerationHandle(self, self._parse(response))

    async def get(self, generation_id: str) -> Generation:
        response = await self._send("GET", c.GENERATIONS_PATH, params={"generation_id": generation_id},
                                    idempotent=True)
        return self._parse(response)

    async def list(self, *, limit: int = 20, after: str | None = None,
                   status: str | None = None) -> GenerationPage:
        """The newest generations first; pass `page.next_cursor` as `after` for the next page."""
        params = {k: v for k, v in {"limit": limit, "after": after, "status": status}.items() if v is not None}
        response = await self._send("GET", c.GENERATIONS_PATH, params=params, idempotent=True)
        return GenerationPage.from_dict(response.json())

    async def cancel(self, generation_id: str) -> Generation:
        """Cancel a queued or running generation (ConflictError once it has finished)."""
        return self._parse(await self._send("DELETE", self._generation_path(generation_id), idempotent=True))

    async def wait(self, generation_id: str, *, on_progress: ProgressCallback | None = None,
                   timeout: float | None = None, poll_interval: float | None = None) -> Generation:
        """Poll until done (at the server's Retry-After pace unless `poll_interval` is given).

        Calls `on_progress(generation)` on every change; raises GenerationFailed if it ends in error
        and WaitTimeout after `timeout` seconds.
        """
        waiter = Waiter(timeout, time.monotonic())
        while True:
            response = await self._send("GET", c.GENERATIONS_PATH, params={"generation_id": generation_id},
                                        idempotent=True)
            generation = self._parse(response)
            if on_progress is not None and waiter.changed(generation):
                if inspect.isawaitable(result := on_progress(generation)):
                    await result
            if waiter.result(generation):
                return generation
            await self._sleep(waiter.delay(generation, self._poll_delay(response, poll_interval), time.monotonic()))

    async def download(self, generation: Generation | str, path: str | Path, *, variant: str = "video",
                 timeout: float | None = None) -> Path:
        """Write the video (or `variant="thumbnail"`) to `path`, waiting for completion first if needed."""
        gen = generation if isinstance(generation, Generation) else await self.get(generation)
        if not gen.done:
            gen = await self.wait(gen.id, timeout=timeout)
        elif not gen.succeeded:
            raise GenerationFailed(gen)
        path, part = Path(path), part_path(Path(path))
        response = await self._send("GET", media_url(gen, variant), headers={"Accept": "*/*"}, idempotent=True,
                                    stream=True)
        try:
            with part.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
        finally:
            await response.aclose()
        part.replace(path)
        return path

    # -- transport ------------------------------------------------------------------------------
    async def _send(self, method: str, path: str, *, idempotent: bool, json: Any = None,
                    params: dict | None = None, headers: dict[str, str] | None = None,
                    stream: bool = False) -> httpx.Response:
        """One request with retries: connection errors, 429 and 503 (Retry-After honoured), idempotent only."""
        url = self._url(path)
        request = self._http.build_request(method, url, json=json, params=params,
                                           headers=self._request_headers(url, headers))
        retries = self.retry.max_retries if idempotent else 0
        for attempt in range(retries + 1):
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                if attempt < retries:
                    await self._sleep(self.retry.delay(attempt))
                    continue
                kind = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
                raise kind(f"{method} {url}: {transport_words(exc)}", request_url=url) from exc
            if response.is_success:
                return response
            await response.aread()
            if attempt < retries and self._should_retry(response):
                await response.aclose()
                await self._sleep(self.retry.delay(attempt, retry_after(response.headers)))
                continue
            raise self._error(response)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncGenerationHandle:
    """A submitted generation: `wait()`, `download()`, `cancel()`; `generation` is its last seen state."""

    def __init__(self, client: AsyncClient, generation: Generation) -> None:
        self.client, self.generation = client, generation

    @property
    def id(self) -> str:
        return self.generation.id

    async def refresh(self) -> Generation:
        self.generation = await self.client.get(self.id)
        return self.generation

    async def wait(self, *, on_progress: ProgressCallback | None = None, timeout: float | None = None,
             poll_interval: float | None = None) -> Generation:
        self.generation = await self.client.wait(self.id, on_progress=on_progress, timeout=timeout,
                                           poll_interval=poll_interval)
        return self.generation

    async def download(self, path: str | Path, *, variant: str = "video", timeout: float | None = None) -> Path:
        if not self.generation.done:
            await self.wait(timeout=timeout)
        return await self.client.download(self.generation, path, variant=variant, timeout=timeout)

    async def cancel(self) -> Generation:
        self.generation = await self.client.cancel(self.id)
        return self.generation

    def __repr__(self) -> str:
        return f"AsyncGenerationHandle(id={self.id!r}, status={self.generation.status!r})"
