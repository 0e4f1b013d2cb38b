"""Run one claimed job: decode inputs, run the engine, encode, store artifacts, finish."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipforge.core.capabilities import job_asked, refusal
from clipforge.core.errors import Cancelled, ClipforgeError, EngineUnavailable, InvalidInput
from clipforge.core.job import OUTPUT_FILES, Job, JobStatus
from clipforge.core.routing import Routing
from clipforge.core.settings import Settings
from clipforge.core.spec import GenerationSpec, output_size
from clipforge.engines.base import Engine, EngineOutput, EngineRequest
from clipforge.engines.registry import create_engine
from clipforge.inputs.images import decode_image
from clipforge.jobs.base import JobStore, LeaseState
from clipforge.jobs.cleanup import delete_inputs
from clipforge.jobs.rows import cancelled_error
from clipforge.media.encode import EncodeResult, encode_mp4
from clipforge.media.stills import jpeg_bytes, spritesheet
from clipforge.storage.base import ArtifactStore
from clipforge.worker.hosted import fail_over, produce_hosted
from clipforge.worker.progress import JobProgress, LeaseLost

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class MediaKeys:
    video: str
    thumbnail: str
    spritesheet: str

    @classmethod
    def for_token(cls, token: str) -> MediaKeys:
        return cls(*(f"{token}/{name}" for name in OUTPUT_FILES))


def build_request(spec: GenerationSpec, artifacts: ArtifactStore) -> EngineRequest:
    """Decode the stored input images and work out the output size."""
    image = decode_image(artifacts.get_bytes(spec.image)) if spec.image else None
    tail = decode_image(artifacts.get_bytes(spec.tail_image)) if spec.tail_image else None
    width, height = output_size(spec, image.size if image is not None else None)
    return EngineRequest(spec=spec, width=width, height=height, image=image, tail_image=tail)


class EngineTimer:
    """Measures a job's phases for metrics: engine time (generate() plus pulling frames from a lazy
    engine), encode time (the rest of encoding) and engine steps (calls of the step callback)."""

    def __init__(self, on_step: Callable[[int, int, str], None]) -> None:
        self._on_step = on_step
        self.steps = 0
        self.engine_seconds = 0.0

    def on_step(self, step: int, total: int, stage: str) -> None:
        self.steps += 1
        self._on_step(step, total, stage)

    def frames(self, frames: Any) -> Any:
        iterator = iter(frames)
        while True:
            started = time.monotonic()
            try:
                frame = next(iterator)
            except StopIteration:
                return
            finally:
                self.engine_seconds += time.monotonic() - started
            yield frame


def encode_output(output: EngineOutput, path: Path, progress: JobProgress | None = None) -> EncodeResult:
    def on_frame(i: int, n: int) -> None:
        if progress is not None:
            progress.step(i, n, progress.stage if progress.stage != "starting" else "encoding")

    return encode_mp4(path, output.frames, num_frames=output.num_frames, width=output.width,
                      height=output.height, fps=output.fps, audio=output.audio,
                      sample_rate=output.sample_rate, on_frame=on_frame, thumbnail_at=output.thumbnail_frame)


class JobRunner:
    """Everything a worker needs to run jobs: engines (loaded once), stores, settings."""

    def __init__(self, store: JobStore, artifacts: ArtifactStore, routing: Routing, settings: Settings,
                 engine_factory: Callable[[str], Engine] | None = None) -> None:
        self.store, self.artifacts, self.routing, self.settings = store, artifacts, routing, settings
        self._factory = engine_factory
        self._engines: dict[str, Engine] = {}
        self.current_job: Job | None = None
        self._progress: JobProgress | None = None
        self._handing_back = False

    def engine(self, name: str) -> Engine:
        if name not in self._engines:
            if self._factory is not None:
                engine = self._factory(name)
            else:
                engine = create_engine(name, self.routing.engine_config(name))
            engine.load()
            self._engines[name] = engine
        return self._engines[name]

    def run(self, job: Job, worker_id: str) -> JobStatus | None:
        """Run a claimed job to a terminal state; None if the lease was lost (nothing written)."""
        started = time.monotonic()
        self.current_job, self._handing_back = job, False
        try:
            return self._run(job, worker_id, started)
        finally:
            self.current_job = self._progress = None

    def hand_back(self) -> bool:
        """Ask the running job to stop at its next step and go back to the queue (worker shutdown).
        False when no job is running."""
        progress = self._progress
        if self.current_job is None or progress is None:
            return False
        self._handing_back = True
        progress.state = LeaseState.LOST  # the next step raises LeaseLost
        return True

    def _run(self, job: Job, worker_id: str, started: float) -> JobStatus | None:
        with JobProgress(self.store, job.id, worker_id, self.settings.lease_seconds,
                         self.settings.heartbeat_seconds) as progress:
            self._progress = progress
            try:
                outputs = self._produce(job, progress)
            except LeaseLost:
                if self._handing_back:
                    released = self.store.release(job.id, worker_id)
                    log.warning("job %s: %s", job.id, "handed back to the queue" if released else
                                "could not be handed back (no longer ours)")
                    return None
                log.warning("job %s: lease lost; leaving it to its new worker", job.id)
                return None
            except Cancelled:
                return self._end(job, worker_id, JobStatus.CANCELLED, cancelled_error())
            except EngineUnavailable as exc:  # a hosted provider is down: the next engine of the route, if any
                if fail_over(job, worker_id, exc, self.store, self.routing):
                    return JobStatus.QUEUED
                return self._end(job, worker_id, JobStatus.FAILED, failure_message(exc))
            except Exception as exc:  # every failure ends the job with a message a person can act on
                error = failure_message(exc)
                log.exception("job %s failed: %s", job.id, error["message"])
                outputs = None
            if outputs is None:  # outside the except block: its traceback (the job's tensors) is gone
                self._release_memory(job.engine)
                return self._end(job, worker_id, JobStatus.FAILED, error)
        outputs["run_seconds"] = round(time.monotonic() - started, 3)
        expires = time.time() + self.settings.retention_seconds
        if not self.store.finish(job.id, worker_id, JobStatus.COMPLETED, outputs=outputs, expires_at=expires):
            log.warning("job %s: finished but no longer ours; output discarded", job.id)
            self.artifacts.delete_prefix(job.media_token)
            return None
        return JobStatus.COMPLETED

    def _end(self, job: Job, worker_id: str, status: JobStatus, error: dict[str, Any]) -> JobStatus:
        """Finish a job that failed or was cancelled, and delete its inputs: nothing will use them."""
        if self.store.finish(job.id, worker_id, status, error=error):
            delete_inputs(self.artifacts, job)
        return status

    def _produce(self, job: Job, progress: JobProgress) -> dict[str, Any]:
        engine = self.engine(job.engine)
        check_limits(engine, job, self.routing.engine_config(job.engine))
        if engine.hosted:
            return produce_hosted(engine, job, progress, self.store, self.artifacts,  # type: ignore[arg-type]
                                  MediaKeys.for_token(job.media_token))
        spec = GenerationSpec.from_dict(job.params["spec"])
        request = build_request(spec, self.artifacts)
        progress.stage = "generating"
        timer = EngineTimer(progress.step)
        phase = time.monotonic()
        output = engine.generate(request, timer.on_step)
        timer.engine_seconds += time.monotonic() - phase
        output.frames = timer.frames(output.frames)
        engine_before_encode = timer.engine_seconds
        keys = MediaKeys.for_token(job.media_token)
        with tempfile.TemporaryDirectory(prefix="clipforge-") as tmp:
            video = Path(tmp) / "output.mp4"
            phase = time.monotonic()
            result = encode_output(output, video, progress)
            encode_seconds = time.monotonic() - phase - (timer.engine_seconds - engine_before_encode)
            progress.check()
            progress.stage = "storing"
            phase = time.monotonic()
            self.artifacts.put_file(keys.video, video, "video/mp4")
            size = video.stat().st_size
        self.artifacts.put_bytes(keys.thumbnail, jpeg_bytes(result.thumbnail), "image/jpeg")
        self.artifacts.put_bytes(keys.spritesheet, jpeg_bytes(spritesheet(result.sprites)), "image/jpeg")
        timings = {"engine_seconds": round(timer.engine_seconds, 4),
                   "encode_seconds": round(max(0.0, encode_seconds), 4),
                   "store_seconds": round(time.monotonic() - phase, 4), "engine_steps": timer.steps}
        return {"video": keys.video, "thumbnail": keys.thumbnail, "spritesheet": keys.spritesheet,
                "file_size": size, "width": result.width, "height": result.height, "fps": result.fps,
                "duration": result.duration, "has_audio": result.has_audio, "engine": job.engine,
                "timings": timings}

    def _release_memory(self, name: str) -> None:
        """Let the failed job's engine (if it loaded) free what the job left, so the next job fits."""
        engine = self._engines.get(name)
        if engine is None:
            return
        try:
            engine.release_memory()
        except Exception:  # freeing memory must never turn a failed job into a crashed worker
            log.exception("engine %s: releasing memory after a failure failed", name)

    def unload(self) -> None:
        for engine in self._engines.values():
            engine.unload()
        self._engines.clear()


def check_limits(engine: Engine, job: Job, config: dict[str, Any]) -> None:
    """InvalidInput when the job asks what its engine cannot honour. The api checks this at create
    against the limits live workers publish, but a job queued for an autoscaled engine while no worker
    was up was never checked: it must fail here, not have the field silently dropped."""
    refused = refusal(job.engine, engine.limits(config), job_asked(job.params))
    if refused is not None:
        raise InvalidInput(refused[0], refused[1], "unsupported_by_engine")


def failure_message(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, InvalidInput):
        return {"name": "InvalidInput", "message": exc.message}
    if isinstance(exc, ClipforgeError):
        return {"name": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, MemoryError):
        return {"name": "OutOfMemory", "message": "The engine ran out of memory; try a shorter clip or "
                "a smaller size, or ask the operator to enable offloading."}
    return {"name": "EngineError", "message": f"The engine failed: {type(exc).__name__}: {exc}"}
