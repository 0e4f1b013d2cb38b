"""Webhook outbox rules shared by every store: which transitions warrant a delivery, the delivery
row, secrets, and the retry schedule (Standard Webhooks style; the dispatcher is worker/webhooks.py).

A job's `webhook` field is `{"url": ..., "events": [...]}` with events from EVENTS; without
`events` the default is completed and failed. "failed" covers failed, cancelled and lost-worker
failures. Stores call `delivery_for` inside the transaction that changes the job's status, so a
delivery exists if and only if the transition committed.

A dispatcher may cap the deliveries it has in flight per receiver (`delivery_origin`: the URL's
scheme, host and port): `JobStore.claim_deliveries(..., per_origin=, busy=)` then skips due
deliveries whose receiver is at the cap, leaving them due and untouched, and takes later due ones
to other receivers instead (`ReceiverCap` is that rule, shared by the stores).
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from clipforge.core.job import JobStatus

EVENTS = ("started", "completed", "failed")
DEFAULT_EVENTS = ("completed", "failed")
EVENT_TYPE_PREFIX = "generation."
SECRET_PREFIX = "whsec_"

BACKOFF_CAP_SECONDS = 3600.0     # one hour between attempts at most
GIVE_UP_AFTER_SECONDS = 24 * 3600.0
MAX_DELIVERY_ATTEMPTS = 40       # a backstop: with the default 5 s base this is more than 24 h of tries

DELIVERY_COLUMNS = ("id", "job_id", "owner", "url", "event_type", "status", "attempts", "next_attempt_at",
                    "last_error", "created_at", "updated_at", "delivered_at")

_EVENT_OF_STATUS = {JobStatus.RUNNING: "started", JobStatus.COMPLETED: "completed",
                    JobStatus.FAILED: "failed", JobStatus.CANCELLED: "failed"}


def webhook_events(webhook: dict[str, Any] | None) -> tuple[str, ...]:
    """The events a job's webhook asked for (the default when it named none)."""
    if not webhook or not webhook.get("url"):
        return ()
    events = webhook.get("events")
    return tuple(events) if events else DEFAULT_EVENTS


def event_for(webhook: dict[str, Any] | None, status: JobStatus | str) -> str | None:
    """The event type (`generation.completed`, ...) a transition into `status` sends, or None."""
    event = _EVENT_OF_STATUS.get(JobStatus(status))
    if event is None or event not in webhook_events(webhook):
        return None
    return EVENT_TYPE_PREFIX + event


def new_delivery_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


def delivery_for(job_id: str, owner: str, webhook: dict[str, Any] | None, status: JobStatus | str,
                 now: float | None = None) -> dict[str, Any] | None:
    """The outbox row a job's transition into `status` enqueues, or None when none is warranted."""
    event_type = event_for(webhook, status)
    if event_type is None:
        return None
    assert webhook is not None
    now = time.time() if now is None else now
    return {"id": new_delivery_id(), "job_id": job_id, "owner": owner, "url": webhook["url"],
            "event_type": event_type, "status": "pending", "attempts": 0, "next_attempt_at": now,
            "last_error": None, "created_at": now, "updated_at": now, "delivered_at": None}


def delivery_origin(url: str) -> str:
    """The receiver a delivery goes to, as the per-receiver cap counts it: `scheme://host:port`,
    lower-cased, the default port written out (`HTTPS://Hooks.Example.com/a` and
    `https://hooks.example.com:443/b` are one receiver; another port or scheme is another)."""
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower().rstrip(".")
    try:
        port = parts.port
    except ValueError:  # a malformed port: the URL is its own receiver (its attempts fail anyway)
        return url.strip().lower()
    port = port if port is not None else {"https": 443, "http": 80}.get(scheme)
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" if port is None else f"{scheme}://{host}:{port}"


class ReceiverCap:
    """Admits deliveries, oldest due first, while each receiver has fewer than `per_origin` in
    flight, counting the caller's `busy` ones and those admitted so far (`per_origin=None`: all)."""

    def __init__(self, per_origin: int | None = None, busy: Mapping[str, int] | None = None) -> None:
        self.per_origin = per_origin
        self.counts: dict[str, int] = dict(busy or {})

    def admit(self, url: str) -> bool:
        if self.per_origin is None:
            return True
        origin = delivery_origin(url)
        if self.counts.get(origin, 0) >= self.per_origin:
            return False
        self.counts[origin] = self.counts.get(origin, 0) + 1
        return True


def delivery_row(delivery: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(delivery[c] for c in DELIVERY_COLUMNS)


def row_to_delivery(row: Any) -> dict[str, Any]:
    return dict(zip(DELIVERY_COLUMNS, row, strict=True))


def new_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` + base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(24)).decode()


def retry_delay(attempts: int, base_seconds: float) -> float:
    """Seconds before the next try after `attempts` failed ones: base, 2x base, 4x ..., capped at 1 h."""
    return min(BACKOFF_CAP_SECONDS, base_seconds * 2 ** max(0, min(attempts - 1, 40)))


def next_attempt_at(delivery: dict[str, Any], base_seconds: float, now: float | None = None) -> float | None:
    """When to try a delivery again after its latest attempt failed; None when it is time to give up
    (about 24 h after it was enqueued, or MAX_DELIVERY_ATTEMPTS tries)."""
    now = time.time() if now is None else now
    attempts = int(delivery["attempts"]) + 1  # counting the attempt that just failed
    if attempts >= MAX_DELIVERY_ATTEMPTS:
        return None
    at = now + retry_delay(attempts, base_seconds)
    if at > float(delivery["created_at"]) + GIVE_UP_AFTER_SECONDS:
        return None
    return at
