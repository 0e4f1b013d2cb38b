"""The app factory: builds every service once, attaches one router per API surface."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from clipforge.api import aiml, docs, metrics, openai, playground, system, webhooks
from clipforge.api.auth import KeyRing
from clipforge.api.errors import install_error_handlers
from clipforge.api.limits import RateLimiter
from clipforge.api.middleware import RequestContext
from clipforge.api.openapi import install_openapi
from clipforge.api.services import Services
from clipforge.api.submit import Submitter
from clipforge.core.keys import load_policies
from clipforge.core.routing import Routing, load_routing
from clipforge.core.settings import Settings
from clipforge.inputs.fetch import ImageFetcher
from clipforge.jobs.base import JobStore, open_store
from clipforge.jobs.cleanup import QueueWaitSweeper
from clipforge.storage.base import ArtifactStore, open_artifacts

log = logging.getLogger(__name__)

MAX_BODY = 32 * 1024 * 1024  # two 10 MB images as base64, with room to spare


def queue_sweep_interval(settings: Settings) -> float:
    """How often the api fails jobs queued past the limit: a quarter of the limit, between 1 s and 60 s."""
    return min(60.0, max(1.0, settings.max_queue_seconds / 4))


def create_app(settings: Settings, store: JobStore | None = None, artifacts: ArtifactStore | None = None,
               routing: Routing | None = None) -> FastAPI:
    settings = settings.with_keys()
    store = store or open_store(settings.resolved_database_url)
    artifacts = artifacts or open_artifacts(settings.resolved_storage_url, **settings.storage_options)
    routing = routing or load_routing(settings.models_config)
    fetcher = ImageFetcher(allow_private=settings.allow_private_urls, timeout=settings.fetch_timeout_seconds,
                           max_bytes=settings.max_image_bytes)
    # Jobs queued past the queue-wait limit fail even where no worker runs (scaled to zero): the api sweeps too.
    sweeper = QueueWaitSweeper(store, artifacts, settings.max_queue_seconds, queue_sweep_interval(settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sweeper.start()
        try:
            yield
        finally:
            sweeper.stop()

    app = FastAPI(title="clipforge", version="0.1.0", docs_url=None, redoc_url=None,  # api.docs serves /docs offline
                  description="Self-hosted image-to-video and text-to-video with native audio.", lifespan=lifespan)
    keys = KeyRing(load_policies(settings.api_keys, settings.keys_file))
    app.state.services = Services(settings, store, artifacts, routing, keys,
                                  Submitter(store, artifacts, routing, settings, fetcher), RateLimiter())
    install_error_handlers(app)
    for surface in (system, aiml, openai, playground, docs, metrics, webhooks):
        surface.attach_router(app)
    install_openapi(app, lambda: list(routing.models))
    app.add_middleware(metrics.LogContext)  # inside RequestContext: the request id is set by then
    app.add_middleware(RequestContext, max_body=MAX_BODY)
    return app
