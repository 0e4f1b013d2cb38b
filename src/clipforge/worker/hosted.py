"""Running a claimed job on a hosted engine: hand it the stored inputs, re-host what comes back.

The engine submits, polls and downloads (clipforge.engines.hosted); this module checks that the file
decodes, stores it with a thumbnail and a spritesheet in clipforge's own storage (so links never expire
with the provider's), and records the provider's job id and usage in the outputs (shown as `meta`).
Fail-over lives here too: a transient provider failure moves the job to the next ready engine of its
model's route.
"""

from __future__ import annotations

import logging
import mimetypes
import tempfile
from pathlib import Path
from typing import Any

from clipforge.core.capabilities import job_asked
from clipforge.core.errors import EngineError, EngineUnavailable
from clipforge.core.job import Job
from clipforge.core.routing import WORKER_TTL, Routing, engine_states, pick_engine
from clipforge.core.spec import GenerationSpec
from clipforge.engines.hosted.base import HostedEngine, HostedTask, InputImage
from clipforge.jobs.base import JobStore
from clipforge.media.probe import UndecodableVideo, read_clip
from clipforge.media.stills import jpeg_bytes, spritesheet
from clipforge.storage.base import ArtifactStore
from clipforge.worker.progress import JobProgress

log = logging.getLogger(__name__)


def stored_image(artifacts: ArtifactStore, key: str | None) -> InputImage | None:
    if not key:
        return None
    content_type = mimetypes.guess_type(key)[0] or "image/png"
    return InputImage(artifacts.get_bytes(key), content_type)


def produce_hosted(engine: HostedEngine, job: Job, progress: JobProgress, store: JobStore,
                   artifacts: ArtifactStore, keys: Any) -> dict[str, Any]:
    """Run the job upstream and store its clip; the outputs dict the runner finishes the job with."""
    spec = GenerationSpec.from_dict(job.params["spec"])
    progress.stage = "submitting"

    def save(data: dict[str, Any]) -> None:
        store.save_checkpoint(job.id, progress.worker_id, data)

    with tempfile.TemporaryDirectory(prefix="clipforge-hosted-") as tmp:
        task = HostedTask(job.id, job.model, spec, Path(tmp), stored_image(artifacts, spec.image),
                          stored_image(artifacts, spec.tail_image), progress.step,
                          job.params.get("checkpoint"), save)
        result = engine.run(task)
        progress.stage = "checking"
        try:
            clip = read_clip(result.path)
        except UndecodableVideo as exc:
            raise EngineError(f"{engine.name}: the provider's result is not a playable video: {exc}") from exc
        progress.check()
        progress.stage = "storing"
        artifacts.put_file(keys.video, result.path, "video/mp4")
        size = result.path.stat().st_size
    artifacts.put_bytes(keys.thumbnail, jpeg_bytes(clip.thumbnail), "image/jpeg")
    artifacts.put_bytes(keys.spritesheet, jpeg_bytes(spritesheet(clip.sprites)), "image/jpeg")
    return {"video": keys.video, "thumbnail": keys.thumbnail, "spritesheet": keys.spritesheet,
            "file_size": size, "width": clip.width, "height": clip.height, "fps": clip.fps,
            "duration": clip.duration, "has_audio": clip.has_audio, "engine": job.engine,
            "provider": result.meta}


def fail_over(job: Job, worker_id: str, error: EngineUnavailable, store: JobStore, routing: Routing) -> str | None:
    """Move the job to the next ready engine of its route that can honour it; that engine's name, or
    None when there is none (the caller fails the job)."""
    try:
        route = routing.route(job.model)
    except Exception:
        return None
    states = engine_states(store.live_workers(WORKER_TTL))
    target = pick_engine(route, states, job_asked(job.params), after=job.engine, autoscaled=routing.autoscaled)
    if target is None or not store.reroute(job.id, worker_id, target):
        return None
    log.warning("job %s: %s; failing over to engine %s", job.id, error, target)
    return target
