"""The loop every hosted engine shares: submit or resume, poll, cancel, download. Providers map fields."""

from __future__ import annotations

import base64
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx

from clipforge.core.errors import Cancelled, ConfigError, EngineError, EngineUnavailable
from clipforge.core.spec import GenerationSpec
from clipforge.engines.base import Engine, EngineOutput, EngineRequest, Readiness, StepCallback, no_progress
from clipforge.engines.hosted.download import DownloadPolicy, download
from clipforge.engines.hosted.http import ProviderHTTP, clean_json, clean_text
from clipforge.engines.options import Option, check_engine_config

log = logging.getLogger(__name__)

STEPS = 1000  # progress is reported as step/STEPS
MAX_RETRY_AFTER = 300.0  # seconds: the longest a provider's Retry-After may make a poll wait
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"

# Options every hosted engine takes in its [engines.<name>] table: name -> type, or a tuple of allowed values.
HOSTED_OPTIONS: tuple[Option, ...] = (
    Option("base_url"), Option("api_key_env"), Option("upstream_models", (dict,)), Option("unsupported", (list,)),
    Option("media_hosts", (list,)), Option("allow_private_media", (bool,)), Option("poll_seconds", (float,)),
    Option("max_poll_seconds", (float,)), Option("expected_seconds", (float,)), Option("max_retries", (int,)),
    Option("request_timeout_seconds", (float,)), Option("max_download_bytes", (int,)),
    Option("download_timeout_seconds", (float,)), Option("job_timeout_seconds", (float,)),
)


@dataclass(frozen=True)
class InputImage:
    data: bytes
    content_type: str

    def data_uri(self) -> str:
        return f"data:{self.content_type};base64,{base64.b64encode(self.data).decode()}"


@dataclass
class HostedTask:
    """One job as a hosted engine sees it."""

    job_id: str
    model: str
    spec: GenerationSpec
    workdir: Path
    image: InputImage | None = None
    tail_image: InputImage | None = None
    on_step: StepCallback = no_progress
    checkpoint: dict[str, Any] | None = None
    save_checkpoint: Callable[[dict[str, Any]], None] = lambda data: None
    last: tuple[int, str] = (0, "submitting")

    def report(self, fraction: float, stage: str) -> None:
        """Progress (0..1 of the provider's work) and stage; raises when the job must stop."""
        fraction = fraction if math.isfinite(fraction) else 0.0  # a provider's NaN progress is no progress
        self.last = (max(self.last[0], int(STEPS * min(max(fraction, 0.0), 1.0))), stage)
        self.on_step(self.last[0], STEPS, stage)

    def check(self) -> None:
        self.on_step(self.last[0], STEPS, self.last[1])


@dataclass
class Upstream:
    """A submitted upstream job: the provider's id and the URLs it gave for it."""

    id: str
    urls: dict[str, str] = field(default_factory=dict)
    model: str = ""


@dataclass
class UpstreamState:
    state: str  # QUEUED | RUNNING | SUCCEEDED | FAILED | CANCELLED
    progress: float | None = None  # 0..1 when the provider reports it
    video_url: str | None = None
    error: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    retry_after: float | None = None
    detail: str | None = None  # queue position, last log line: shown in the stage


@dataclass
class HostedResult:
    path: Path
    meta: dict[str, Any]


class HostedEngine(Engine):
    """Base of hosted engines. Subclasses set the class attributes and implement the four hooks."""

    hosted = True
    options: ClassVar[tuple[Option, ...] | None] = HOSTED_OPTIONS
    default_base_url: ClassVar[str]
    default_key_env: ClassVar[str]
    auth_scheme: ClassVar[str] = "Bearer"
    default_upstream_models: ClassVar[dict[str, str]] = {}
    provider_limits: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: dict[str, Any] | None = None, transport: httpx.BaseTransport | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        super().__init__(config)
        check_options(self.name, self.config)
        key = api_key(self.config, self.default_key_env, environ)
        if not key:
            raise ConfigError(f"{self.name}: the environment variable {self.key_env(self.config)} is not set")
        self.base_url = str(self.config.get("base_url", self.default_base_url)).rstrip("/")
        self.http = ProviderHTTP(self.name, self.base_url, f"{self.auth_scheme} {key}", key,
                                 timeout=float(self.config.get("request_timeout_seconds", 30.0)),
                                 max_retries=int(self.config.get("max_retries", 4)), transport=transport)
        self.media = httpx.Client(timeout=float(self.config.get("request_timeout_seconds", 30.0)),
                                  transport=transport, trust_env=False, follow_redirects=False)
        self.downloads = DownloadPolicy(
            {httpx.URL(self.base_url).netloc.decode(), *self.config.get("media_hosts", [])},
            allow_private=bool(self.config.get("allow_private_media", False)),
            max_bytes=int(self.config.get("max_download_bytes", 1 << 30)),
            timeout=float(self.config.get("download_timeout_seconds", 300.0)))

    # -- what the registry and the api ask -----------------------------------------------------
    @classmethod
    def key_env(cls, config: dict[str, Any]) -> str:
        return str(config.get("api_key_env") or cls.default_key_env)

    @classmethod
    def readiness(cls, config: dict[str, Any], environ: Mapping[str, str] | None = None) -> Readiness:
        try:
            check_options(cls.name, config)
        except ConfigError as exc:
            return Readiness(False, str(exc))
        if not api_key(config, cls.default_key_env, environ):
            return Readiness(False, f"the environment variable {cls.key_env(config)} (api_key_env) is not set")
        try:
            engine = cls(config, environ=environ)
        except ConfigError as exc:
            return Readiness(False, str(exc))
        try:
            return engine.check_credentials()
        except EngineError as exc:
            return Readiness(False, str(exc))
        except httpx.HTTPError as exc:
            return Readiness(False, f"{cls.name}: cannot reach {engine.base_url}: {type(exc).__name__}: {exc}")
        finally:
            engine.unload()

    @classmethod
    def limits(cls, config: dict[str, Any]) -> dict[str, Any]:
        return {**cls.provider_limits, **{name: None for name in config.get("unsupported", [])}}

    def upstream_model(self, model: str) -> str:
        table = {**self.default_upstream_models, **self.config.get("upstream_models", {})}
        return table.get(model, model if not self.default_upstream_models else "")

    # -- provider hooks ------------------------------------------------------------------------
    def check_credentials(self) -> Readiness:
        """Whether the key works, without spending credits where the provider allows it."""
        return Readiness(True)

    def submit(self, task: HostedTask, model: str) -> Upstream:
        raise NotImplementedError

    def status(self, job: Upstream, task: HostedTask) -> UpstreamState:
        raise NotImplementedError

    def cancel(self, job: Upstream) -> None:
        raise NotImplementedError

    # -- the loop ------------------------------------------------------------------------------
    def generate(self, request: EngineRequest, on_step: StepCallback = no_progress) -> EngineOutput:
        raise EngineError(f"{self.name} is a hosted engine: it runs in a worker (clipforge serve or clipforge "
                          "worker), not in-process; route a model to it and submit there")

    def run(self, task: HostedTask) -> HostedResult:
        """Submit (or resume), wait, download: a clip file in task.workdir and the provider's meta."""
        job = self._resume(task) or self._submit(task)
        try:
            state = self._wait(job, task)
        except (Cancelled, EngineUnavailable):
            self._cancel_quietly(job)
            raise
        if state.state == FAILED:
            raise EngineError(f"{self.name}: {self.http.mask(state.error or 'the provider reported a failure')}")
        if state.state == CANCELLED:
            raise EngineError(f"{self.name}: the provider cancelled the job")
        if not state.video_url:
            raise EngineError(f"{self.name}: the provider reported success but returned no video link")
        task.report(1.0, "downloading")
        path = task.workdir / "upstream.mp4"
        size = download(self.media, state.video_url, path, self.downloads, self.name)
        meta = {"engine": self.name, "provider_job_id": job.id, "upstream_model": job.model,
                "usage": clean_json(state.usage), "downloaded_bytes": size}
        return HostedResult(path, meta)

    def _resume(self, task: HostedTask) -> Upstream | None:
        saved = task.checkpoint or {}
        if saved.get("engine") != self.name or not saved.get("id"):
            return None
        log.info("job %s: resuming %s job %s (no new submit)", task.job_id, self.name, saved["id"])
        return Upstream(saved["id"], dict(saved.get("urls", {})), saved.get("model", ""))

    def _submit(self, task: HostedTask) -> Upstream:
        model = self.upstream_model(task.model)
        if not model:
            raise EngineError(f"{self.name}: no upstream model for '{task.model}'; map it in "
                              f"[engines.{self.name}.upstream_models]")
        task.report(0.0, "submitting")
        job = self.submit(task, model)
        if not job.id or clean_text(job.id) != job.id:
            raise EngineError(f"{self.name}: the provider answered the submit with an invalid job id")
        job.urls = {k: v for k, v in job.urls.items() if isinstance(v, str) and clean_text(v) == v}
        job.model = job.model or model
        task.save_checkpoint({"engine": self.name, "id": job.id, "urls": job.urls, "model": job.model})
        log.info("job %s: submitted to %s as %s", task.job_id, self.name, job.id)
        return job

    def _wait(self, job: Upstream, task: HostedTask) -> UpstreamState:
        interval = float(self.config.get("poll_seconds", 2.0))
        ceiling = float(self.config.get("max_poll_seconds", 15.0))
        started, limit = time.monotonic(), float(self.config.get("job_timeout_seconds", 3600.0))
        expected = float(self.config.get("expected_seconds", 120.0))
        while True:
            task.check()
            state = self.status(job, task)
            if state.state in (SUCCEEDED, FAILED, CANCELLED):
                return state
            elapsed = time.monotonic() - started
            if elapsed > limit:
                raise EngineError(f"{self.name}: the provider did not finish within {limit:g} s "
                                  "(job_timeout_seconds)")
            guess = state.progress if state.progress is not None else min(0.9, elapsed / expected)
            stage = "upstream queued" if state.state == QUEUED else "upstream generating"
            if state.detail:  # a queue position or the provider's last log line, shown to the user
                stage = f"{stage}: {self.http.mask(state.detail)[:120]}"
            task.report(guess if state.state == RUNNING else 0.0, stage)
            wait = interval if state.retry_after is None else min(state.retry_after, MAX_RETRY_AFTER)
            self.sleep(task, min(wait, max(0.0, limit - elapsed) + 0.01))  # wake to notice the job timeout
            interval = min(ceiling, interval * 1.5)

    def sleep(self, task: HostedTask, seconds: float) -> None:
        """Wait without spending CPU, noticing a cancel or a lost lease within a quarter second."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(0.25, left))
            task.check()

    def _cancel_quietly(self, job: Upstream) -> None:
        try:
            self.cancel(job)
            log.info("%s job %s: cancel sent upstream", self.name, job.id)
        except Exception as exc:  # best effort: the job stops here in any case
            log.warning("%s job %s: upstream cancel failed: %s", self.name, job.id, self.http.mask(str(exc)))

    def api_link(self, link: str | None, path: str) -> str:
        """A status/result/cancel link the provider gave, when it is on base_url's origin; else the
        documented path on base_url (a proxy in base_url, or a link elsewhere: the key never leaves)."""
        return link if link and self.http.on_base(link) else path

    def poll(self, method: str, url: str, task: HostedTask, **kwargs: Any) -> httpx.Response:
        """A provider request made while a job waits: its retries sleep interruptibly."""
        return self.http.request(method, url, sleep=lambda s: self.sleep(task, s), **kwargs)

    def unload(self) -> None:
        self.http.close()
        self.media.close()


def api_key(config: dict[str, Any], default_env: str, environ: Mapping[str, str] | None = None) -> str:
    """The key from the environment variable that `api_key_env` names (never from the config itself)."""
    env = os.environ if environ is None else environ
    return env.get(str(config.get("api_key_env") or default_env), "").strip()


def check_options(engine: str, config: dict[str, Any]) -> None:
    """ConfigError for an unknown option or a value of the wrong type (keys never belong in the file)."""
    for name in config:
        if "key" in name and name not in {o.name for o in HOSTED_OPTIONS} | {"class"}:
            raise ConfigError(f"[engines.{engine}] {name}: unknown option (put the key in an environment "
                              "variable and name it in api_key_env)")
    check_engine_config(engine, HOSTED_OPTIONS, config)
