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

from clipforge.core.errors import Cancelled, ConfigError, EngineError
from clipforge.core.spec import GenerationSpec
from clipforge.engines.base import Engine, EngineOutput, EngineRequest, Readiness, StepCallback, no_progress
from clipforge.engines.hosted.download import DownloadPolicy, download
from clipforge.engines.hosted.http import MAX_RETRY_AFTER, ProviderHTTP, clean_json, clean_text, seconds
from clipforge.engines.options import Option, check_engine_config

log = logging.getLogger(__name__)

STEPS = 1000  # progress is reported as step/STEPS
SECRET_WORDS = ("key", "token", "secret", "password")  # an undeclared option named so is a key written in
CANCEL_SECONDS = 10.0  # the most an upstream cancel (with its retries) may take: the job has ended already
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
    deadline: float | None = None  # time.monotonic() by which the job must be done (run sets it)

    def time_left(self) -> float:
        return math.inf if self.deadline is None else self.deadline - time.monotonic()

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
        self.check_config(self.name, self.config)
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
        """The reason names base_url and the error for the operator; `public`, what /v1/models shows,
        names neither (a provider's or an internal URL is no business of API callers)."""
        try:
            cls.check_config(cls.name, config)
        except ConfigError as exc:
            return Readiness(False, str(exc), public="its [engines] configuration is invalid")
        if not api_key(config, cls.default_key_env, environ):
            return Readiness(False, f"the environment variable {cls.key_env(config)} (api_key_env) is not set",
                             public="no provider key is configured")
        try:
            engine = cls(config, environ=environ)
        except ConfigError as exc:
            return Readiness(False, str(exc), public="its [engines] configuration is invalid")
        try:
            state = engine.check_credentials()
            if not state.ready and state.public is None:
                return Readiness(False, state.reason, state.limits, state.detail, "provider check failed")
            return state
        except EngineError as exc:
            return Readiness(False, str(exc), public="provider check failed")
        except httpx.HTTPError as exc:
            return Readiness(False, f"{cls.name}: cannot reach {engine.base_url}: {type(exc).__name__}: {exc}",
                             public="provider not reachable")
        finally:
            engine.unload()

    @classmethod
    def check_config(cls, table: str, config: dict[str, Any]) -> None:
        """A key written into the table (`api_key = ...`, `token`, `secret`...) is refused with a pointer
        to `api_key_env` before the generic unknown-key check could answer for it."""
        declared = {o.name for o in cls.options or ()} | {"class"}
        for name in config:
            if any(word in name.lower() for word in SECRET_WORDS) and name not in declared:
                raise ConfigError(f"[engines.{table}] {name}: a key is never read from the models config; put it "
                                  f"in an environment variable and name that variable in api_key_env (default: "
                                  f"api_key_env = \"{cls.default_key_env}\")")
        check_engine_config(table, cls.options, config)

    @classmethod
    def limits(cls, config: dict[str, Any]) -> dict[str, Any]:
        return {**cls.provider_limits, **{name: None for name in config.get("unsupported", [])}}

    def upstream_model(self, model: str) -> str:
        table = {**self.default_upstream_models, **self.config.get("upstream_models", {})}
        return table.get(model, model if not self.default_upstream_models else "")

    # -- provider hooks ------------------------------------------------------------------------
    credentials_path: str | None = None  # a GET that costs nothing and answers 401/403 to a bad key
    key_word = "key"                     # what the provider calls its key, in readiness reasons

    def check_credentials(self) -> Readiness:
        """Whether the key works, without spending credits: `GET credentials_path` (if the provider
        has such a path) answering 401 or 403 means the key is refused."""
        if self.credentials_path is None:
            return Readiness(True)
        response = self.http.client.get(self.http.url(self.credentials_path))
        if response.status_code in (401, 403):
            return Readiness(False, f"{self.name}: {self.base_url} refused the {self.key_word} in "
                             f"{self.key_env(self.config)} (HTTP {response.status_code})",
                             public=f"the provider refused the {self.key_word}")
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
        """Submit (or resume), wait, download: a clip file in task.workdir and the provider's meta.
        All of it, every retry, poll and wait included, ends by job_timeout_seconds from here."""
        ends = time.monotonic() + self.job_timeout
        task.deadline = ends if task.deadline is None else min(task.deadline, ends)
        job = self._resume(task) or self._submit(task)
        try:
            state = self._wait(job, task)
        except (Cancelled, EngineError):  # a cancel, a timeout, a provider gone: stop spending upstream
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
        size = download(self.media, state.video_url, path, self.downloads, self.name, task.deadline)
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

    @property
    def job_timeout(self) -> float:
        return float(self.config.get("job_timeout_seconds", 3600.0))

    def _timed_out(self, why: str = "") -> EngineError:
        return EngineError(f"{self.name}: the provider did not finish within {self.job_timeout:g} s "
                           f"(job_timeout_seconds){why}")

    def _wait(self, job: Upstream, task: HostedTask) -> UpstreamState:
        interval = float(self.config.get("poll_seconds", 2.0))
        ceiling = float(self.config.get("max_poll_seconds", 15.0))
        started = time.monotonic()
        expected = float(self.config.get("expected_seconds", 120.0))
        last_call = False
        while True:
            task.check()
            if task.time_left() <= 0:
                raise self._timed_out()
            state = self.status(job, task)
            if state.state in (SUCCEEDED, FAILED, CANCELLED):
                return state
            left = task.time_left()
            if left <= 0 or last_call:
                raise self._timed_out()
            elapsed = time.monotonic() - started
            guess = state.progress if state.progress is not None else min(0.9, elapsed / expected)
            stage = "upstream queued" if state.state == QUEUED else "upstream generating"
            if state.detail:  # a queue position or the provider's last log line, shown to the user
                stage = f"{stage}: {self.http.mask(state.detail)[:120]}"
            task.report(guess if state.state == RUNNING else 0.0, stage)
            if state.retry_after is not None:  # the provider says when to ask again: not before
                wait = min(state.retry_after, MAX_RETRY_AFTER)
                if wait >= left:
                    raise self._timed_out(f": the provider asked to be polled again in {seconds(wait)} s and the "
                                          f"job has {seconds(left)} s left")
            else:
                wait = interval
                if wait >= left:  # no room for another full interval: one last poll shortly before the end
                    wait, last_call = max(0.0, left - min(1.0, left / 2)), True
            self.sleep(task, wait)
            interval = min(ceiling, interval * 1.5)

    def sleep(self, task: HostedTask, seconds: float) -> None:
        """Wait without spending CPU, noticing a cancel or a lost lease within a quarter second."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(0.25, left))
            task.check()

    def _cancel_quietly(self, job: Upstream) -> None:
        try:
            self.cancel(job)  # its request is bounded by CANCEL_SECONDS (send_cancel)
            log.info("%s job %s: cancel sent upstream", self.name, job.id)
        except Exception as exc:  # best effort: the job stops here in any case
            log.warning("%s job %s: upstream cancel failed: %s", self.name, job.id, self.http.mask(str(exc)))

    def api_link(self, link: str | None, path: str) -> str:
        """A status/result/cancel link the provider gave, when it is on base_url's origin; else the
        documented path on base_url (a proxy in base_url, or a link elsewhere: the key never leaves)."""
        return link if link and self.http.on_base(link) else path

    def poll(self, method: str, url: str, task: HostedTask, **kwargs: Any) -> httpx.Response:
        """A provider request made for a job: its retries sleep interruptibly (a cancel stops them
        within a quarter second) and neither they nor the request outlast the job's deadline."""
        return self.http.request(method, url, sleep=lambda s: self.sleep(task, s), deadline=task.deadline,
                                 **kwargs)

    def send_cancel(self, method: str, url: str) -> None:
        """An upstream cancel: best effort, done (retries included) within CANCEL_SECONDS; a provider
        that asks for a longer wait is not waited for."""
        self.http.request(method, url, deadline=time.monotonic() + CANCEL_SECONDS)

    def unload(self) -> None:
        self.http.close()
        self.media.close()


def api_key(config: dict[str, Any], default_env: str, environ: Mapping[str, str] | None = None) -> str:
    """The key from the environment variable that `api_key_env` names (never from the config itself)."""
    env = os.environ if environ is None else environ
    return env.get(str(config.get("api_key_env") or default_env), "").strip()

