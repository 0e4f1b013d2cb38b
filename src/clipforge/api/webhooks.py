"""Webhooks on the api side: the `webhook_url` / `webhook_events` request fields (both dialects) and
the endpoints through which a key reads and rotates its own signing secret.

    GET  /v1/webhooks/secret          -> {"object": "webhook.secret", "secret": "whsec_..."}
    POST /v1/webhooks/secret/rotate   -> the same, with a new secret (later deliveries use it)

Deliveries themselves are sent by the workers (clipforge.worker.webhooks).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI

from clipforge.api.auth import require_key
from clipforge.api.services import Services, services
from clipforge.core.errors import InvalidInput
from clipforge.core.settings import Settings
from clipforge.inputs.fetch import check_public_url_async
from clipforge.jobs.webhooks import DEFAULT_EVENTS, EVENTS

MAX_URL_CHARS = 2048

router = APIRouter(tags=["webhooks"])


async def webhook_from_body(body: dict[str, Any], settings: Settings) -> dict[str, Any] | None:
    """The job's `webhook` field from a create body, or None when it asks for none.

    `webhook_url`: an http(s) URL that passes the SSRF guard (private addresses only with
    `allow_private_urls`). `webhook_events`: optional, a list from started/completed/failed;
    default completed and failed ("failed" also covers cancelled). InvalidInput names the field.
    """
    url, events = body.get("webhook_url"), body.get("webhook_events")
    if url is None:
        if events is not None:
            raise InvalidInput("webhook_events", "webhook_events: needs webhook_url as well", "missing")
        return None
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput("webhook_url", "webhook_url: must be an http(s) URL string", "type")
    url = url.strip()
    if len(url) > MAX_URL_CHARS:
        raise InvalidInput("webhook_url", f"webhook_url: is {len(url)} characters; at most {MAX_URL_CHARS}",
                           "max_length")
    wanted = parse_events(events)  # before the DNS lookup: the cheap checks first
    await check_public_url_async(url, "webhook_url", settings.allow_private_urls)
    return {"url": url, "events": list(wanted)}


def parse_events(value: Any) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_EVENTS
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidInput("webhook_events", f"webhook_events: must be a non-empty list from {', '.join(EVENTS)}",
                           "type")
    unknown = sorted(set(value) - set(EVENTS))
    if unknown:
        raise InvalidInput("webhook_events", f"webhook_events: unknown event {unknown[0]!r}; choose from "
                           f"{', '.join(EVENTS)}", "enum")
    return tuple(e for e in EVENTS if e in value)


@router.get("/v1/webhooks/secret")
async def get_secret(owner: str = Depends(require_key), svc: Services = Depends(services)) -> dict[str, Any]:
    """The caller's signing secret (made on first use); verify deliveries with it."""
    secret = await svc.jobs.webhook_secret(owner)
    return {"object": "webhook.secret", "secret": secret}


@router.post("/v1/webhooks/secret/rotate")
async def rotate_secret(owner: str = Depends(require_key), svc: Services = Depends(services)) -> dict[str, Any]:
    """Replace the caller's signing secret; every later delivery attempt is signed with the new one."""
    secret = await svc.jobs.webhook_secret(owner, rotate=True)
    return {"object": "webhook.secret", "secret": secret, "rotated": True}


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
