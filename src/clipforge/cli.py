"""The `clipforge` command: a thin layer over the api, worker, engines and client."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import multiprocessing
import os
import re
import shlex
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from clipforge.core.errors import ClipforgeError, InvalidInput
from clipforge.core.settings import Settings

log = logging.getLogger("clipforge")


def configure_logging(level: str = "INFO", fmt: str | None = None) -> None:
    """Text or JSON lines (with request and job ids) on stderr; the format from CLIPFORGE_LOG_FORMAT when unset."""
    from clipforge.core.logs import configure_logging as configure

    configure(level, fmt or os.environ.get("CLIPFORGE_LOG_FORMAT") or "text")


def settings_options(fn: Callable) -> Callable:
    """Options shared by every command that builds Settings; each falls back to an env var."""
    options = [
        click.option("--home", envvar="CLIPFORGE_HOME", show_envvar=True, type=click.Path(path_type=Path),
                     default=Path(".clipforge"), show_default=True, help="Data directory (database, media, key)."),
        click.option("--api-keys", envvar="CLIPFORGE_API_KEYS", show_envvar=True, default=None,
                     help="Comma-separated API keys. Unset: a key is made once in <home>/api-key."),
        click.option("--keys-file", envvar="CLIPFORGE_KEYS_FILE", show_envvar=True, default=None,
                     type=click.Path(path_type=Path, exists=True, dir_okay=False),
                     help="TOML file of API keys with per-key rate limits and quotas (format in the README)."),
        click.option("--database-url", envvar="CLIPFORGE_DATABASE_URL", show_envvar=True, default=None,
                     help="Job store: sqlite:///path or postgresql://... [default: SQLite in <home>]"),
        click.option("--storage-url", envvar="CLIPFORGE_STORAGE_URL", show_envvar=True, default=None,
                     help="Artifact store: file:///dir or s3://bucket/prefix [default: <home>/media]"),
        click.option("--public-url", envvar="CLIPFORGE_PUBLIC_URL", show_envvar=True, default=None,
                     help="Base URL for absolute media links [default: the request's own base URL]."),
        click.option("--models-config", envvar="CLIPFORGE_MODELS_CONFIG", show_envvar=True, default=None,
                     type=click.Path(path_type=Path, exists=True, dir_okay=False),
                     help="TOML file routing model ids to engines [default: the packaged models.toml]."),
        click.option("--allow-private-urls/--no-allow-private-urls", envvar="CLIPFORGE_ALLOW_PRIVATE_URLS",
                     show_envvar=True, default=False,
                     help="Let image and webhook URLs reach loopback/private hosts (local development only)."),
        click.option("--lease-seconds", envvar="CLIPFORGE_LEASE_SECONDS", show_envvar=True, type=float,
                     default=30.0, show_default=True,
                     help="A running job whose worker is silent this long is retried by another."),
        click.option("--retention-hours", envvar="CLIPFORGE_RETENTION_HOURS", show_envvar=True, type=float,
                     default=168.0, show_default=True, help="Outputs are deleted this long after completion."),
        click.option("--max-queue-seconds", envvar="CLIPFORGE_MAX_QUEUE_SECONDS", show_envvar=True,
                     type=click.FloatRange(min=0), default=86400.0, show_default=True,
                     help="A job no worker starts within this long of being queued fails with code queue_timeout "
                          "(freeing the caller's active-job quota); 0: wait forever."),
        click.option("--log-format", envvar="CLIPFORGE_LOG_FORMAT", show_envvar=True, default="text",
                     type=click.Choice(["text", "json"]), show_default=True,
                     help="Log lines as text, or one JSON object per line carrying request and job ids."),
        click.option("--shutdown-grace-seconds", envvar="CLIPFORGE_SHUTDOWN_GRACE_SECONDS", show_envvar=True,
                     type=float, default=30.0, show_default=True,
                     help="On SIGTERM a worker's running job may finish this long; then it goes back to the queue."),
        click.option("--metrics-auth/--no-metrics-auth", envvar="CLIPFORGE_METRICS_AUTH", show_envvar=True,
                     default=False, help="Require an API key on /metrics [default: open]."),
        click.option("--webhook-backoff-seconds", envvar="CLIPFORGE_WEBHOOK_BACKOFF_SECONDS", show_envvar=True,
                     type=click.FloatRange(min=0.01), default=5.0, show_default=True,
                     help="First webhook retry delay; doubles per failed attempt, capped at 1 h, for about 24 h."),
        click.option("--s3-endpoint-url", envvar="CLIPFORGE_S3_ENDPOINT_URL", show_envvar=True, default=None,
                     help="S3-compatible endpoint (MinIO, R2, Ceph...) [default: AWS]."),
        click.option("--s3-region", envvar="CLIPFORGE_S3_REGION", show_envvar=True, default=None,
                     help="S3 region [default: boto3's (AWS_REGION), else us-east-1]."),
        click.option("--s3-access-key-id", envvar="CLIPFORGE_S3_ACCESS_KEY_ID", show_envvar=True, default=None,
                     help="S3 access key [default: boto3's chain: AWS_* env, profile, instance role]."),
        click.option("--s3-secret-access-key", envvar="CLIPFORGE_S3_SECRET_ACCESS_KEY", show_envvar=True,
                     default=None, help="S3 secret key (prefer the env var to the flag)."),
        click.option("--s3-addressing-style", envvar="CLIPFORGE_S3_ADDRESSING_STYLE", show_envvar=True,
                     default=None, type=click.Choice(["auto", "path", "virtual"]),
                     help="Bucket in the path or in the host name [default: auto; MinIO usually needs path]."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def build_settings(home: Path, api_keys: str | None, keys_file: Path | None, database_url: str | None,
                   storage_url: str | None, public_url: str | None, models_config: Path | None,
                   allow_private_urls: bool, lease_seconds: float, retention_hours: float, **more: Any) -> Settings:
    keys = tuple(k.strip() for k in (api_keys or "").split(",") if k.strip())
    extra = {k: more[k] for k in _MORE_SETTINGS if more.get(k) is not None}
    return Settings(home=home, api_keys=keys, keys_file=keys_file, database_url=database_url, storage_url=storage_url,
                    public_url=public_url, models_config=models_config, allow_private_urls=allow_private_urls,
                    lease_seconds=lease_seconds, heartbeat_seconds=max(0.5, min(5.0, lease_seconds / 4)),
                    retention_seconds=retention_hours * 3600, **extra)


_MORE_SETTINGS = ("log_format", "shutdown_grace_seconds", "metrics_auth", "s3_endpoint_url", "s3_region",
                  "s3_access_key_id", "s3_secret_access_key", "s3_addressing_style", "webhook_backoff_seconds",
                  "max_queue_seconds")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Text for the terminal with its control characters escaped (`\\x1b`): what a server says (an
    error message it relays from a provider, an id, a prompt) must not set the window title, rewrite
    the screen or plant links through escape sequences. Tabs and line breaks stay."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def fail(message: str) -> None:
    click.echo(f"Error: {printable(message)}", err=True)
    sys.exit(1)


class Group(click.Group):
    """Turns clipforge's own errors into one `Error: ...` line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InvalidInput as exc:
            fail(exc.message)
        except ClipforgeError as exc:
            fail(str(exc))


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="clipforge")
def main() -> None:
    """clipforge: self-hosted image-to-video and text-to-video with native audio."""


# -- serve / worker -----------------------------------------------------------------------------
def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (an embedded worker must not outlive serve)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def run_worker(settings: Settings, engines: list[str] | None = None, embedded: bool = False, slots: int = 1) -> None:
    from clipforge.core.routing import load_routing
    from clipforge.jobs.base import open_store
    from clipforge.storage.base import open_artifacts
    from clipforge.worker.loop import Worker

    if embedded:
        _die_with_parent()
    configure_logging(fmt=settings.log_format)
    store = open_store(settings.resolved_database_url)
    artifacts = open_artifacts(settings.resolved_storage_url, **settings.storage_options)
    worker = Worker(store, artifacts, load_routing(settings.models_config), settings, engines=engines, slots=slots)
    # SIGTERM (systemd, docker stop) and SIGINT (Ctrl-C reaches the whole process group): stop claiming,
    # let the running job finish within the grace period, else hand it back to the queue.
    signal.signal(signal.SIGTERM, lambda *_: worker.request_stop())
    signal.signal(signal.SIGINT, lambda *_: worker.request_stop())
    worker.check_engines()  # logs each engine's state, and again whenever it changes
    worker.run_forever()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(0),
              help="Embedded worker processes (0: api only, for a fleet with separate workers).")
@settings_options
def serve(host: str, port: int, workers: int, **options: Any) -> None:
    """Run the HTTP api with N embedded workers (child processes)."""
    import uvicorn

    from clipforge.api.app import create_app
    from clipforge.api.protocol import BoundedHttpToolsProtocol
    from clipforge.core.logs import uvicorn_log_config

    settings = build_settings(**options).with_keys()
    configure_logging(fmt=settings.log_format)
    check_engine_tables(settings.models_config)
    if not options.get("api_keys") and not options.get("keys_file"):
        log.info("API key (from %s): %s", settings.home / "api-key", settings.api_keys[0])
    app = create_app(settings)
    ctx = multiprocessing.get_context("spawn")
    # Workers link media in webhook bodies without a request to take a base URL from: default to ours.
    worker_settings = settings if settings.public_url else replace(settings, public_url=_own_url(host, port))
    procs = [ctx.Process(target=run_worker, args=(worker_settings, None, True), name=f"worker-{i}")
             for i in range(workers)]
    # SIGTERM (systemd, docker, Kubernetes) and SIGINT: uvicorn shuts the api down, then re-raises the
    # signal into the handler that was there before it. That is ours, so serve lives on to stop its
    # workers the way `clipforge worker` stops: finish within the grace period or hand the job back.
    stopping = _StopSignal()
    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    for proc in procs:
        proc.start()
    try:
        if _wait_for_workers(app.state.services.store, procs, stopping):
            # JSON logs: leave logging to us (log_config=None), so uvicorn's records carry the request id too.
            uvicorn.run(app, host=host, port=port, log_level="info", http=BoundedHttpToolsProtocol,
                        log_config=None if settings.log_format == "json" else uvicorn_log_config())
    finally:
        _stop_workers(procs, settings.shutdown_grace_seconds)


class _StopSignal:
    """A signal handler that only notes the signal (serve's shutdown runs in its `finally`)."""

    def __init__(self) -> None:
        self.received: int | None = None

    def __call__(self, signum: int, _frame: Any) -> None:
        self.received = signum


def _stop_workers(procs: list[Any], grace_seconds: float) -> None:
    """SIGTERM each embedded worker and wait while it finishes its job or hands it back."""
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    if any(p.is_alive() for p in procs):
        log.info("waiting up to %.0f s for the embedded workers to finish or hand back their jobs", grace_seconds)
    for proc in procs:
        proc.join(timeout=grace_seconds + 15)  # a worker's own hand-back takes <= 10 s


def check_engine_tables(models_config: Path | None) -> None:
    """Refuse bad `[engines.*]` settings before serving. The check imports the engine classes, so it
    runs in a child process: the api process never imports an engine module."""
    from concurrent.futures import ProcessPoolExecutor

    from clipforge.engines.registry import check_models_config

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(check_models_config, models_config).result()  # re-raises the child's ConfigError


def _own_url(host: str, port: int) -> str:
    """http://host:port as others may reach it (a wildcard address becomes this machine's name)."""
    import socket

    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _wait_for_workers(store: Any, procs: list[Any], stopping: _StopSignal, timeout: float = 60.0) -> bool:
    """Hold the port closed until the embedded workers have registered their engines, so the first
    request after "Uvicorn running" finds a ready engine instead of a 503. False when a stop signal
    came first."""
    import time

    from clipforge.core.routing import WORKER_TTL

    deadline = time.monotonic() + timeout
    pids = {str(p.pid) for p in procs}
    while pids and time.monotonic() < deadline and stopping.received is None:
        live = {str(w["info"].get("pid")) for w in store.live_workers(WORKER_TTL)}
        if pids <= live:
            return True
        if any(p.exitcode is not None for p in procs):
            raise ClipforgeError("an embedded worker exited during start-up; see the log above")
        time.sleep(0.1)
    if pids and stopping.received is None:
        log.warning("workers not registered after %.0f s; serving anyway", timeout)
    return stopping.received is None


def _pool_child(settings: Settings, engines: list[str] | None, gpu: str | None) -> None:
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    run_worker(settings, engines, embedded=True)


def run_worker_pool(settings: Settings, engines: list[str] | None, gpus: list[str | None]) -> None:
    """One worker process per slot (each runs one job at a time, so engines that hold the GIL scale);
    a child that dies is restarted; SIGTERM/SIGINT is passed on and the children get their grace period."""
    import threading
    import time

    configure_logging(fmt=settings.log_format)
    ctx = multiprocessing.get_context("spawn")
    stopping = threading.Event()
    procs: list[Any] = [None] * len(gpus)

    def start(i: int) -> None:
        procs[i] = ctx.Process(target=_pool_child, args=(settings, engines, gpus[i]), name=f"worker-{i}")
        procs[i].start()
        log.info("worker slot %d: pid %d%s", i, procs[i].pid, f" (GPU {gpus[i]})" if gpus[i] is not None else "")

    def stop(*_: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for i in range(len(gpus)):
        start(i)
    restarts = [0.0] * len(gpus)
    while not stopping.wait(0.5):
        for i, proc in enumerate(procs):
            if not proc.is_alive() and time.monotonic() - restarts[i] > 5:  # at most one restart per 5 s
                log.warning("worker slot %d: pid %d exited with %s; restarting", i, proc.pid, proc.exitcode)
                restarts[i] = time.monotonic()
                start(i)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + settings.shutdown_grace_seconds + 15
    for proc in procs:
        proc.join(timeout=max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            log.error("worker pid %d did not stop in time; killing it", proc.pid)
            proc.kill()
            proc.join()


@main.command()
@click.option("--engines", default=None, help="Comma-separated engines to serve [default: all routed ones].")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1),
              help="Jobs at once. Hosted engines only (aiml, fal, replicate): N jobs in this one process; "
                   "otherwise N worker processes, each running one job at a time.")
@click.option("--gpus", default=None,
              help="Comma-separated GPU ids, one worker process per GPU (sets CUDA_VISIBLE_DEVICES for each; "
                   "implies --concurrency).")
@settings_options
def worker(engines: str | None, concurrency: int, gpus: str | None, **options: Any) -> None:
    """Run workers: one process by default; --concurrency N or --gpus 0,1,... for several."""
    from clipforge.core.routing import load_routing
    from clipforge.engines.registry import check_routing

    names = [e.strip() for e in engines.split(",") if e.strip()] if engines else None
    settings = build_settings(**options)
    routing = load_routing(settings.models_config)
    check_routing(routing)
    if names:
        routed = routing.engine_names
        unknown = [n for n in names if n not in routed]
        if unknown:
            fail(f"--engines: {', '.join(unknown)} not routed by any model; routed engines: {', '.join(routed)}")
    if not gpus and concurrency > 1 and _all_hosted(settings, names):
        run_worker(settings, names, slots=concurrency)  # hosted jobs wait on the network: threads, not processes
        return
    slots: list[str | None] = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else [None] * concurrency
    if len(slots) == 1:
        if slots[0] is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = slots[0]
        run_worker(settings, names)
    else:
        run_worker_pool(settings, names, slots)


def _all_hosted(settings: Settings, names: list[str] | None) -> bool:
    from clipforge.core.routing import load_routing
    from clipforge.worker.loop import is_hosted

    routing = load_routing(settings.models_config)
    served = names or routing.engine_names
    return bool(served) and all(is_hosted(n, routing.engine_config(n)) for n in served)


@main.command()
@settings_options
def migrate(**options: Any) -> None:
    """Apply pending schema migrations to the configured database and print what was applied."""
    from clipforge.jobs.base import open_store, redact_url
    from clipforge.jobs.migrate import migration_files

    settings = build_settings(**options)
    url = settings.resolved_database_url
    shown = redact_url(url)
    store = open_store(url)  # a database that cannot be opened is one `Error:` line
    try:
        applied = list(getattr(store, "applied_at_open", [])) + store.migrate()
    finally:
        store.close()
    backend = "postgres" if url.startswith("postgres") else "sqlite" if url.startswith("sqlite") else None
    latest = migration_files(backend)[-1][1] if backend else "n/a"
    for name in applied:
        click.echo(f"applied {name}")
    click.echo(f"{shown}: {'up to date' if not applied else f'{len(applied)} applied'}; schema at {latest}")


# -- models ----------------------------------------------------------------------------------------
@main.command()
@click.option("--models-config", envvar="CLIPFORGE_MODELS_CONFIG", show_envvar=True, default=None,
              type=click.Path(path_type=Path, exists=True, dir_okay=False), help="Routing TOML file.")
@click.option("--verbose", "-v", is_flag=True, help="Also print each engine's details (ltx2: memory estimate and "
              "offload plan).")
def models(models_config: Path | None, verbose: bool) -> None:
    """List model ids, their engines, and whether each engine is ready on this machine."""
    from clipforge.core.routing import load_routing
    from clipforge.engines.registry import check_routing, engine_readiness

    routing = load_routing(models_config)
    check_routing(routing)
    states = {n: engine_readiness(n, routing.engine_config(n)) for n in routing.engine_names}
    for model_id, route in routing.models.items():
        click.echo(f"{model_id}  ({route.task})")
        for name in route.engines:
            s = states[name]
            click.echo(f"    {name:10s} {'ready' if s.ready else 'not ready: ' + (s.reason or '')}")
            if verbose and s.detail:
                click.echo(f"    {'':10s} {s.detail}")


# -- selftest ---------------------------------------------------------------------------------------
@main.command()
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Where to build the tiny model and write selftest.json [default: a temporary directory].")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
def selftest(workdir: Path | None, as_json: bool) -> None:
    """Check this install end to end: build a tiny random LTX-2, run it through the real engine and worker.

    Needs the `models` extra (torch, diffusers, transformers) but no download and no GPU.
    """
    import json
    import tempfile

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import diffusers
        import transformers

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        from clipforge.engines.ltx2_tiny import selftest as run_selftest
    except ImportError as exc:
        raise ClipforgeError(f"selftest needs the models extra ({exc}); pip install 'clipforge[models]'") from None
    with tempfile.TemporaryDirectory(prefix="clipforge-selftest-") as tmp:
        report = run_selftest(workdir or Path(tmp))
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        for name, check in report["checks"].items():
            ok = check.get("ok", check.get("ready")) if isinstance(check, dict) else check
            click.echo(f"{'ok  ' if ok else 'FAIL'} {name}")
        click.echo(f"timings: {', '.join(f'{k} {v}s' for k, v in report['timings'].items())}")
    if not report["ok"]:
        raise ClipforgeError("selftest failed; run with --json for details")
    click.echo("selftest passed")


# -- generate (in-process) -----------------------------------------------------------------------
def _read_image(path: Path | None, field: str) -> Any:
    if path is None:
        return None
    from clipforge.inputs.images import check_image_bytes, decode_image

    checked = check_image_bytes(_image_file(path, field), field)
    return decode_image(checked.data)


@main.command()
@click.option("--prompt", required=True, help="What the clip shows (and sounds like).")
@click.option("--image", type=click.Path(path_type=Path), default=None,
              help="First frame (image-to-video): a JPEG, PNG or WEBP file.")
@click.option("--tail-image", type=click.Path(path_type=Path), default=None,
              help="Last frame (needs --image): a JPEG, PNG or WEBP file.")
@click.option("--duration", type=click.Choice(["5", "10"]), default="5", show_default=True, help="Seconds.")
@click.option("--aspect-ratio", type=click.Choice(["16:9", "9:16", "1:1"]), default=None,
              help="Text-to-video frame shape [default: 16:9; image-to-video follows the image].")
@click.option("--negative-prompt", default=None, help="What to avoid.")
@click.option("--cfg-scale", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="How closely to follow the prompt.")
@click.option("--no-audio", is_flag=True, help="Make a silent clip (no audio stream).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True, help="Random seed.")
@click.option("--engine", default="preview", show_default=True, help="Engine to run in this process.")
@click.option("--models-config", envvar="CLIPFORGE_MODELS_CONFIG", show_envvar=True, default=None,
              type=click.Path(path_type=Path, exists=True, dir_okay=False), help="Routing TOML (engine settings).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("out.mp4"), show_default=True,
              help="Where to write the MP4.")
@click.option("--server", envvar="CLIPFORGE_SERVER", show_envvar=True, default=None,
              help="Submit to this clipforge (or AIML API) base URL instead of generating in this process.")
@click.option("--api-key", envvar="CLIPFORGE_API_KEY", show_envvar=True, default=None,
              help="API key for --server [default: $AIMLAPI_API_KEY].")
@click.option("--model", default=None, help="Model id for --server [default: the Kling 2.6 Pro i2v/t2v id].")
@click.pass_context
def generate(ctx: click.Context, prompt: str, image: Path | None, tail_image: Path | None, duration: str,
             aspect_ratio: str | None, negative_prompt: str | None, cfg_scale: float, no_audio: bool, seed: int,
             engine: str, models_config: Path | None, output: Path, server: str | None, api_key: str | None,
             model: str | None) -> None:
    """Generate one clip, in this process or (with --server) on a server, with a progress bar.

    With --server, Ctrl-C stops waiting but not the generation: it keeps running on the server, and
    `clipforge download <id>` saves it later.
    """
    if server:
        given = {name: ctx.params[name] for name in ("seed", "cfg_scale")
                 if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT}
        return _generate_remote(server, api_key, output, prompt=prompt, image=image, tail_image=tail_image,
                                duration=int(duration), aspect_ratio=aspect_ratio, negative_prompt=negative_prompt,
                                generate_audio=False if no_audio else None, model=model, **given)
    from tqdm import tqdm

    from clipforge.core.routing import load_routing
    from clipforge.core.spec import GenerationSpec, output_size
    from clipforge.engines.base import EngineRequest
    from clipforge.engines.registry import check_engine, create_engine, engine_readiness
    from clipforge.worker.runner import encode_output

    if tail_image and not image:
        raise InvalidInput("--tail-image", "--tail-image: needs --image as well (the first frame)", "missing")
    routing = load_routing(models_config)
    config = routing.engine_config(engine)
    check_engine(engine, config)
    state = engine_readiness(engine, config)
    if not state.ready:
        raise ClipforgeError(f"engine '{engine}' is not ready: {state.reason}")
    first, last = _read_image(image, "--image"), _read_image(tail_image, "--tail-image")
    spec = GenerationSpec(prompt=prompt, duration=int(duration), aspect_ratio=aspect_ratio,
                          negative_prompt=negative_prompt, cfg_scale=cfg_scale, generate_audio=not no_audio,
                          seed=seed, image="<file>" if first else None)
    width, height = output_size(spec, first.size if first else None)
    request = EngineRequest(spec, width, height, image=first, tail_image=last)
    eng = create_engine(engine, config)
    eng.load()
    with tqdm(total=100, unit="%", desc="generating", bar_format="{l_bar}{bar}| {n:.0f}/100 [{elapsed}]") as bar:
        def on_step(step: int, total: int, stage: str) -> None:
            bar.set_description(stage)
            bar.update(max(0.0, 100 * step / max(total, 1) - bar.n))

        out = eng.generate(request, on_step)
        result = encode_output(out, output, None)
        bar.update(100 - bar.n)
    audio = "with audio" if result.has_audio else "no audio"
    click.echo(f"wrote {output} ({result.width}x{result.height}, {result.duration:.1f} s, {audio})")


# -- client commands (talk to a running server through clipforge.client) --------------------------------
@contextlib.contextmanager
def _client_errors() -> Iterator[None]:
    """SDK failures become one `Error: ...` line, like clipforge's own errors."""
    from clipforge.client import APIConnectionError, ClipforgeClientError

    try:
        yield
    except APIConnectionError as exc:
        fail(f"cannot reach the server: {exc}")  # the SDK words OS error codes ("[Errno -2]": host not found)
    except ClipforgeClientError as exc:
        fail(str(exc))


def _client(server: str | None, api_key: str | None) -> Any:
    from clipforge.client import Client

    if not api_key and not os.environ.get("AIMLAPI_API_KEY"):
        fail("no API key: pass --api-key or set CLIPFORGE_API_KEY (a server started with `clipforge serve` "
             "prints its key and keeps it in .clipforge/api-key)")
    return Client(base_url=server, api_key=api_key)


def _image_file(path: Path | None, flag: str) -> bytes | None:
    """The bytes of the image file an option names; one `Error:` line naming the option when it is not one."""
    if path is None:
        return None
    if not path.is_file():
        raise InvalidInput(flag, f"{flag}: no such file: {path}", "missing")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(flag, f"{flag}: cannot read {path}: {exc.strerror or exc}", "unreadable") from None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            kind = im.format
    except (UnidentifiedImageError, OSError, ValueError):
        kind = None
    if kind not in ("JPEG", "PNG", "WEBP"):
        what = f"a {kind} image" if kind else "not an image"
        raise InvalidInput(flag, f"{flag}: {path} is {what}; expected a JPEG, PNG or WEBP file", "type")
    return data


def client_options(fn: Callable) -> Callable:
    """--server, --api-key and --json, for the commands that only talk to a server."""
    options = [
        click.option("--server", envvar="CLIPFORGE_SERVER", show_envvar=True, default=None,
                     help="Server base URL [default: $CLIPFORGE_BASE_URL or http://127.0.0.1:8000]."),
        click.option("--api-key", envvar="CLIPFORGE_API_KEY", show_envvar=True, default=None,
                     help="API key [default: $AIMLAPI_API_KEY]."),
        click.option("--json", "as_json", is_flag=True, help="Print the server's JSON instead of a summary."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _summary(gen: Any) -> str:
    progress = f" {gen.progress}%" if gen.progress is not None and not gen.done else ""
    line = f"{gen.id}  {gen.status}{progress}"
    if gen.queue_position is not None and gen.status == "queued":
        line += f" (position {gen.queue_position} in queue)"
    if gen.video_url:
        line += f"  {gen.video_url}"
    if gen.error:
        line += f"  {gen.error.name}: {gen.error.message}"
    return printable(line)


def _wait_with_bar(client: Any, generation_id: str) -> Any:
    """Wait for a generation with a progress bar; its final state."""
    from tqdm import tqdm

    with tqdm(total=100, unit="%", desc="queued", bar_format="{l_bar}{bar}| {n:.0f}/100 [{elapsed}]") as bar:
        def on_progress(gen: Any) -> None:
            bar.set_description(gen.stage or gen.status)
            bar.update(max(0, (gen.progress or 0) - bar.n))

        done = client.wait(generation_id, on_progress=on_progress)
        bar.update(100 - bar.n)
    return done


def _still_running(generation_id: str, server: str, output: Path) -> None:
    """Ctrl-C while waiting: the generation goes on on the server; say how to fetch or stop it."""
    gid, where = shlex.quote(generation_id), f" --server {shlex.quote(server)}"
    click.echo(printable(f"\nStopped waiting. Generation {generation_id} keeps running on the server.\n"
                         f"  save it (waits if needed): clipforge download {gid}{where} -o {shlex.quote(str(output))}\n"
                         f"  see how far it is:         clipforge status {gid}{where}\n"
                         f"  stop it:                   clipforge cancel {gid}{where}"), err=True)
    sys.exit(130)


def _wrote(output: Path, done: Any) -> None:
    size = f"{done.width}x{done.height}, " if done.width else ""
    audio = {True: ", with audio", False: ", no audio"}.get(done.has_audio, "")
    click.echo(printable(f"wrote {output} ({size}{done.duration_seconds} s{audio}) from {done.id}"))


def _generate_remote(server: str, api_key: str | None, output: Path, image: Path | None, tail_image: Path | None,
                     **request: Any) -> None:
    if tail_image and not image:
        raise InvalidInput("--tail-image", "--tail-image: needs --image as well (the first frame)", "missing")
    first, last = _image_file(image, "--image"), _image_file(tail_image, "--tail-image")
    with _client_errors(), _client(server, api_key) as client:
        job = client.generate(image=first, tail_image=last, **request)
        click.echo(printable(f"submitted {job.id}"), err=True)
        try:
            done = _wait_with_bar(client, job.id)
            client.download(done, output)
        except KeyboardInterrupt:
            _still_running(job.id, server, output)
    _wrote(output, done)


@main.command()
@click.argument("generation_id")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where to save it [default: the id's first part, .mp4 (.jpg with --thumbnail)].")
@click.option("--thumbnail", is_flag=True, help="Save the JPEG thumbnail instead of the MP4.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait for a generation still queued or running (with a progress bar); --no-wait fails instead.")
@client_options
def download(generation_id: str, output: Path | None, thumbnail: bool, wait: bool, server: str | None,
             api_key: str | None, as_json: bool) -> None:
    """Save a generation's clip from a server (for example one left running by Ctrl-C in generate)."""
    stem = re.sub(r"[^\w.-]", "_", generation_id.split(":")[0]) or "clip"
    output = output or Path(f"{stem}.{'jpg' if thumbnail else 'mp4'}")
    with _client_errors(), _client(server, api_key) as client:
        gen = client.get(generation_id)
        if not gen.done and not wait:
            progress = f", {gen.progress}%" if gen.progress is not None else ""
            fail(f"generation {gen.id} is still {gen.status}{progress}; run again when it has completed "
                 "(or without --no-wait to wait for it)")
        try:
            done = gen if gen.done else _wait_with_bar(client, gen.id)
            client.download(done, output, variant="thumbnail" if thumbnail else "video")
        except KeyboardInterrupt:
            _still_running(gen.id, client.base_url, output)
    if as_json:
        click.echo(json.dumps(done.raw, indent=2))
    elif thumbnail:
        click.echo(printable(f"wrote {output} (thumbnail) from {done.id}"))
    else:
        _wrote(output, done)


@main.command()
@click.argument("generation_id")
@client_options
def status(generation_id: str, server: str | None, api_key: str | None, as_json: bool) -> None:
    """Show one generation of a server."""
    with _client_errors(), _client(server, api_key) as client:
        gen = client.get(generation_id)
    click.echo(json.dumps(gen.raw, indent=2) if as_json else _summary(gen))


@main.command("list")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True, help="Generations per page.")
@click.option("--after", default=None, help="Start after this generation id (the previous page's cursor).")
@click.option("--status", "status_", default=None,
              type=click.Choice(["queued", "generating", "completed", "failed", "cancelled", "expired"]),
              help="Only generations in this state.")
@client_options
def list_generations(limit: int, after: str | None, status_: str | None, server: str | None, api_key: str | None,
                     as_json: bool) -> None:
    """List a server's generations, newest first."""
    with _client_errors(), _client(server, api_key) as client:
        page = client.list(limit=limit, after=after, status=status_)
    if as_json:
        click.echo(json.dumps({"data": [g.raw for g in page], "has_more": page.has_more,
                               "next_cursor": page.next_cursor}, indent=2))
        return
    for gen in page:
        click.echo(_summary(gen))
    if page.has_more:
        click.echo(f"(more: --after {page.next_cursor})", err=True)


@main.command()
@click.argument("generation_id")
@client_options
def cancel(generation_id: str, server: str | None, api_key: str | None, as_json: bool) -> None:
    """Cancel a queued or running generation on a server."""
    with _client_errors(), _client(server, api_key) as client:
        gen = client.cancel(generation_id)
    click.echo(json.dumps(gen.raw, indent=2) if as_json else f"cancel requested: {_summary(gen)}")


@main.command("webhook-secret")
@click.option("--rotate", is_flag=True, help="Replace the secret; later deliveries are signed with the new one.")
@client_options
def webhook_secret(rotate: bool, server: str | None, api_key: str | None, as_json: bool) -> None:
    """Print this key's webhook signing secret (whsec_...), or rotate it."""
    import httpx

    with _client_errors(), _client(server, api_key) as client:  # the SDK's defaults for server and key
        url = client.base_url + ("/v1/webhooks/secret/rotate" if rotate else "/v1/webhooks/secret")
        try:
            response = httpx.request("POST" if rotate else "GET", url, timeout=30,
                                     headers={"Authorization": f"Bearer {client.api_key}"})
        except httpx.HTTPError as exc:
            fail(f"cannot reach the server: {exc}")
    if not response.is_success:
        try:
            message = response.json().get("message") or response.text
        except ValueError:
            message = response.text
        fail(f"HTTP {response.status_code}: {message}")
    body = response.json()
    click.echo(json.dumps(body, indent=2) if as_json else body["secret"])


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
