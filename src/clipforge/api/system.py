"""Health, readiness, the model list and media downloads."""

from __future__ import annotations

import logging
import mimetypes
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Response
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException

from clipforge.api.async_store import off_loop
from clipforge.api.auth import require_key
from clipforge.api.files import opened_file_response
from clipforge.api.services import Services, services
from clipforge.core.job import is_output_key
from clipforge.core.routing import WORKER_TTL, engine_reason, engine_states, pick_engine

log = logging.getLogger(__name__)
router = APIRouter(tags=["system"])
MEDIA_REDIRECT_SECONDS = 3600


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(svc: Services = Depends(services)) -> JSONResponse:
    """Ready when the store answers and at least one model has a ready engine on a live worker, or an
    autoscaled engine (scaled to zero: a queued job starts a worker)."""
    try:
        states = engine_states(await svc.jobs.live_workers(WORKER_TTL))
    except Exception as exc:  # the error may name the database's host or address: the log has it, not the body
        log.warning("readyz: job store unreachable: %s: %s", type(exc).__name__, exc)
        return JSONResponse({"status": "not ready", "reason": "job store unreachable"}, 503)
    auto = svc.routing.autoscaled
    ready = [m for m, route in svc.routing.models.items() if pick_engine(route, states, autoscaled=auto)]
    if not ready:
        return JSONResponse({"status": "not ready", "reason": "no live worker has a ready engine"}, 503,
                            headers={"Retry-After": "2"})
    return JSONResponse({"status": "ready", "models": ready})


def model_list(svc: Services) -> list[dict[str, Any]]:
    states = engine_states(svc.store.live_workers(WORKER_TTL))
    auto = svc.routing.autoscaled
    data = []
    for model_id, route in svc.routing.models.items():
        engine = pick_engine(route, states, autoscaled=auto)
        data.append({
            "id": model_id, "object": "model", "created": 0, "owned_by": "clipforge",
            "type": "video", "task": route.task, "ready": engine is not None, "engine": engine,
            "engines": [{"name": e, "ready": states.get(e, {}).get("ready", False),
                         "workers": states.get(e, {}).get("workers", 0),
                         "reason": engine_reason(e, states, autoscaled=auto),
                         "limits": states.get(e, {}).get("limits", {})}  # fields refused: None, or values taken
                        for e in route.engines],
        })
    return data


async def list_models(_: str = Depends(require_key), svc: Services = Depends(services)) -> dict[str, Any]:
    return {"object": "list", "data": await svc.jobs.read(model_list, svc)}


@router.get("/media/{key:path}")
async def media(key: str, svc: Services = Depends(services)) -> Response:
    """Output media at unguessable URLs (the token in the key is the capability). The key, decoded once
    by the router, must name an output file exactly; everything else is 404."""
    if not is_output_key(key):
        raise HTTPException(404, "no such media")
    try:
        path = await off_loop(svc.artifacts.local_path, key)
    except ValueError:  # a link that leads out of the store's root
        raise HTTPException(404, "no such media") from None
    if path is None:
        # Object storage: answer with a short-lived signed URL to the object, when it is there.
        signed = svc.artifacts.presigned_url(key, MEDIA_REDIRECT_SECONDS)
        if signed is not None and await off_loop(svc.artifacts.exists, key):
            return RedirectResponse(signed, 307)
        raise HTTPException(404, "no such media (it may have expired)")
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    opened = await off_loop(opened_file_response, path, media_type=content_type,
                            headers={"Cache-Control": "private, max-age=3600"})
    if opened is None:
        raise HTTPException(404, "no such media (it may have expired)")
    return opened


def attach_router(app: FastAPI) -> None:
    models = APIRouter(tags=["system"])  # per app: the module's router must not grow with every app made
    models.add_api_route("/v1/models", list_models, methods=["GET"])
    models.add_api_route("/models", list_models, methods=["GET"])
    app.include_router(router)
    app.include_router(models)
