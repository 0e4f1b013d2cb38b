"""Turning a parsed request into a queued job: check images, store them, pick an engine, enqueue."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from clipforge.api.async_store import AsyncJobStore, off_loop
from clipforge.api.limits import check_active_jobs
from clipforge.core.capabilities import AIML_FIELD_NAMES, asked_fields, refusal
from clipforge.core.errors import Conflict, InvalidInput, NotReady
from clipforge.core.job import Job, new_job_id
from clipforge.core.routing import WORKER_TTL, Routing, engine_reason, engine_states, pick_engine
from clipforge.core.settings import Settings
from clipforge.core.spec import GenerationSpec
from clipforge.inputs.fetch import ImageFetcher, load_image
from clipforge.inputs.images import CheckedImage, check_image_bytes
from clipforge.jobs.base import JobStore
from clipforge.storage.base import ArtifactStore

log = logging.getLogger(__name__)


IDEMPOTENCY_KEY_MAX = 255
IDEMPOTENCY_KEY_CHARS = re.compile(r"[ -~]*")  # printable ASCII, space included


def check_idempotency_key(value: str | None) -> str | None:
    """The Idempotency-Key header as the store keeps it: at most 255 printable ASCII characters, else
    a 400 naming the header and the rule; an empty (or all-blank) key is no key."""
    if value is None:
        return None
    if len(value) > IDEMPOTENCY_KEY_MAX:
        raise InvalidInput("Idempotency-Key", f"Idempotency-Key: must be at most {IDEMPOTENCY_KEY_MAX} "
                           f"characters, got {len(value)}", "max_length", location="header")
    if not IDEMPOTENCY_KEY_CHARS.fullmatch(value):
        bad = next(i for i, ch in enumerate(value) if not " " <= ch <= "~")
        raise InvalidInput("Idempotency-Key", "Idempotency-Key: must contain only printable ASCII characters "
                           f"(space to '~'), got {value[bad]!r} at position {bad}", "printable_ascii",
                           location="header")
    return value.strip() or None


@dataclass
class ImageInput:
    """An input image as it arrived: a reference (URL, data URI, base64), uploaded bytes, or an image a
    dialect already checked (so it is not decoded twice)."""

    field: str
    ref: str | None = None
    data: bytes | None = None
    checked: CheckedImage | None = None


@dataclass
class Submission:
    owner: str
    model: str
    spec: dict[str, Any]
    image: ImageInput | None = None
    tail_image: ImageInput | None = None
    idempotency_key: str | None = None
    webhook: dict[str, Any] | None = None
    remixed_from: str | None = None
    max_active: int = 0  # the key's quota of queued + running jobs (0: unlimited)
    extra: dict[str, Any] = field(default_factory=dict)
    field_names: dict[str, str] = field(default_factory=lambda: dict(AIML_FIELD_NAMES))  # for 400s

    def request_hash(self) -> str:
        """A digest of what was asked, to tell an idempotent retry from a different request."""
        images = [(i.field, i.ref, hashlib.sha256(i.data).hexdigest() if i.data else None)
                  for i in (self.image, self.tail_image) if i]
        blob = json.dumps([self.model, {k: v for k, v in self.spec.items() if k != "seed"},
                           self.spec.get("seed") if self.spec.get("seed_given") else None, images,
                           self.webhook], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


class Submitter:
    def __init__(self, store: JobStore, artifacts: ArtifactStore, routing: Routing, settings: Settings,
                 fetcher: ImageFetcher) -> None:
        self.store, self.artifacts, self.routing, self.settings = store, artifacts, routing, settings
        self.fetcher = fetcher
        self.jobs = AsyncJobStore(store)

    def check_task(self, model: str, task: str) -> None:
        route = self.routing.route(model)
        if route.task != "any" and route.task != task:
            if route.task == "i2v":
                raise InvalidInput("image_url", f"image_url: is required by the image-to-video model '{model}'",
                                   "missing")
            raise InvalidInput("image_url", f"image_url: the text-to-video model '{model}' takes no image; "
                               "use an image-to-video model", "unexpected")

    async def choose_engine(self, model: str, asked: dict[str, Any] | None = None,
                      names: dict[str, str] | None = None) -> str:
        """The first ready engine of the model's route that can honour what is asked; a 400 naming the
        field when ready engines exist but none can, a 503 when none is ready."""
        route = self.routing.route(model)
        states = engine_states(await self.jobs.live_workers(WORKER_TTL))
        auto = self.routing.autoscaled
        engine = pick_engine(route, states, asked, autoscaled=auto)
        if engine is not None:
            return engine
        ready = [e for e in route.engines if states.get(e, {}).get("ready")]
        if ready and asked is not None:
            refused = refusal(ready[0], states[ready[0]].get("limits", {}), asked, names)
            if refused is not None:
                raise InvalidInput(refused[0], refused[1], "unsupported_by_engine")
        reasons = "; ".join(f"{e}: {engine_reason(e, states, autoscaled=auto)}" for e in route.engines)
        raise NotReady(f"model '{model}' has no ready engine ({reasons})")

    async def _checked(self, image: ImageInput) -> CheckedImage:
        if image.checked is not None:
            return image.checked
        if image.data is not None:
            return await off_loop(check_image_bytes, image.data, image.field, self.settings.max_image_bytes)
        assert image.ref is not None
        return await load_image(image.ref, image.field, self.fetcher, self.settings.max_image_bytes)

    async def _replay(self, sub: Submission) -> Job | None:
        """An idempotent retry is answered before any image is fetched or checked again."""
        if not sub.idempotency_key:
            return None
        earlier = await self.jobs.find_by_idempotency_key(sub.owner, sub.idempotency_key)
        if earlier is not None and earlier.request_hash != sub.request_hash():
            raise Conflict("Idempotency-Key was already used with a different request body")
        return earlier

    def _store_and_create(self, sub: Submission, engine: str, images: dict[str, CheckedImage],
                          spec_fields: dict[str, Any], prefix: str) -> tuple[Job, bool]:
        """Store the checked images under `prefix`, then insert the job within the key's quota."""
        for name, checked in images.items():
            key = f"{prefix}/{name}.{checked.extension}"
            self.artifacts.put_bytes(key, checked.data, checked.content_type)
            spec_fields[name] = key
        spec = GenerationSpec(**spec_fields)
        job = Job(id=new_job_id(sub.model), owner=sub.owner, model=sub.model, engine=engine,
                  params={"spec": spec.to_dict(), "inputs_prefix": prefix,
                          "seed_given": bool(sub.spec.get("seed_given")), **sub.extra},
                  max_attempts=self.settings.max_attempts, idempotency_key=sub.idempotency_key,
                  request_hash=sub.request_hash() if sub.idempotency_key else None,
                  webhook=sub.webhook, remixed_from=sub.remixed_from)
        return self.store.create(job, max_active=sub.max_active)

    async def submit(self, sub: Submission) -> tuple[Job, bool]:
        """Validate, store inputs and enqueue; returns (job, created)."""
        sub.idempotency_key = check_idempotency_key(sub.idempotency_key)
        earlier = await self._replay(sub)
        if earlier is not None:
            return earlier, False
        # A cheap early refusal before images are fetched; the store enforces the quota atomically.
        await self.jobs.read(check_active_jobs, self.store, sub.owner, sub.max_active)
        self.check_task(sub.model, "i2v" if sub.image else "t2v")
        images = {name: await self._checked(image) for name, image in
                  (("image", sub.image), ("tail_image", sub.tail_image)) if image is not None}
        asked = asked_fields(sub.spec, sub.image is not None, sub.tail_image is not None)
        engine = await self.choose_engine(sub.model, asked, sub.field_names)
        spec_fields = {k: v for k, v in sub.spec.items() if k != "seed_given"}
        prefix = f"inputs/{secrets.token_urlsafe(18)}"
        created = False
        try:
            job, created = await off_loop(self._store_and_create, sub, engine, images, spec_fields, prefix)
        finally:
            if not created and images:  # refused (quota, conflict), failed, or an earlier job answered
                await off_loop(self.artifacts.delete_prefix, prefix)
        log.info("job %s: queued for engine %s", job.id, engine)
        return job, created
