"""The app factory: builds every service once, attaches one router per API surface."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from clipforge.api import aiml, metrics, openai, playground, system, webhooks
from clipforge.api.auth import KeyRing
from clipforge.api.errors import install_error_handlers
from clipforge.api.limits import RateLimiter
from clipforge.api.middleware import RequestContext
from clipforge.api.services import Services
from clipforge.api.submit import Submitter
from clipforge.core.keys import load_policies
from clipforge.core.routing import Routing, load_routing
from clipforge.core.settings import Settings
from clipforge.inputs.fetch import ImageFetcher
from clipforge.jobs.base import JobStore, open_store
from clipforge.storage.base import ArtifactStore, open_artifacts

log = logging.getLogger(__name__)

MAX_BODY = 32 * 1024 * 1024  # two 10 MB images as base64, with room to spare


def create_app(settings: Settings, store: JobStore | None = None, artifacts: ArtifactStore | None = None,
               routing: Routing | None = None) -> FastAPI:
    settings = settings.with_keys()
    store = store or open_store(settings.resolved_database_url)
    artifacts = artifacts or open_artifacts(settings.resolved_storage_url, **settings.storage_options)
    routing = routing or load_routing(settings.models_config)
    fetcher = ImageFetcher(allow_private=settings.allow_private_urls, timeout=settings.fetch_timeout_seconds,
                           max_bytes=settings.max_image_bytes)
    app = FastAPI(title="clipforge", version="0.1.0",
                  description="Self-hosted image-to-video and text-to-video with native audio.")
    keys = KeyRing(load_policies(settings.api_keys, settings.keys_file))
    app.state.services = Services(settings, store, artifacts, routing, keys,
                                  Submitter(store, artifacts, routing, settings, fetcher), RateLimiter())
    install_error_handlers(app)
    for surface in (system, aiml, openai, playground, metrics, webhooks):
        surface.attach_router(app)
    app.add_middleware(metrics.LogContext)  # inside RequestContext: the request id is set by then
    app.add_middleware(RequestContext, max_body=MAX_BODY)
    return app
