"""The webhook dispatcher: a thread in each worker process that sends the store's outbox.

The thread claims due deliveries (`JobStore.claim_deliveries`, which leases them so no other
dispatcher sends them meanwhile) as sending slots come free, and sends each on its own (a slow
receiver holds one slot, never the others' deliveries). At most `PER_RECEIVER` of the `SLOTS` go to
one receiver (the URL's scheme, host and port: `jobs.webhooks.delivery_origin`) at a time: the store
skips due deliveries to a receiver at that cap, leaving them due and untouched (no attempt counted,
their order kept), so a hanging receiver with a backlog cannot fill every slot for a whole deadline
while other receivers' deliveries wait. A finished send wakes the thread, which claims again at once,
so a held-back delivery is taken as soon as its receiver frees a slot.

Each attempt builds the body from the job's current row, signs it the Standard Webhooks way and
POSTs it:

    webhook-id: msg_...                    (the delivery's id: the same on every retry)
    webhook-timestamp: 1718000000          (seconds, when this attempt was sent)
    webhook-signature: v1,<base64 HMAC-SHA256(key, f"{id}.{timestamp}.{body}")>

where key is the owner's `whsec_` secret, base64-decoded after the prefix, read at send time (so a
rotation applies to every later attempt). A 2xx answer is delivered; anything else, a timeout or a
refused connection is retried with exponential backoff (`Settings.webhook_backoff_seconds`,
doubling, capped at an hour) until about 24 h have passed, then the delivery is marked failed.

Every attempt has a hard deadline (`ATTEMPT_SECONDS`: DNS, connect, sending, and the answer's
status line and headers together, however slowly a receiver trickles them), besides the connect and
per-read timeouts; an attempt past it is a failed attempt, retried like any other.

The SSRF guard runs again at each attempt (DNS may have changed since the job was created), and the
request goes to the checked address itself, as `clipforge.inputs.fetch` does for images.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import ssl
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import certifi
import httpx

from clipforge.core.errors import InvalidInput, NotFound
from clipforge.core.job import Job, JobStatus
from clipforge.core.settings import Settings
from clipforge.inputs.fetch import USER_AGENT, CheckedUrl, Resolver, check_public_url, system_resolver
from clipforge.jobs.base import JobStore
from clipforge.jobs.webhooks import SECRET_PREFIX, delivery_origin, next_attempt_at
from clipforge.storage.base import ArtifactStore, artifact_url

log = logging.getLogger(__name__)

# The AIML dialect's status enum (the api's AIML_STATUS; the worker does not import the api).
AIML_STATUS = {JobStatus.QUEUED: "queued", JobStatus.RUNNING: "generating", JobStatus.COMPLETED: "completed",
               JobStatus.FAILED: "error", JobStatus.CANCELLED: "error", JobStatus.EXPIRED: "error"}

SLOTS = 16               # deliveries in flight at once, each on its own
PER_RECEIVER = 4         # of those, to one receiver (scheme, host and port) at most
BATCH = 4                # deliveries `run_once` claims
CONNECT_SECONDS = 5.0    # per attempt: to connect
READ_SECONDS = 10.0      # per attempt: each read or write
ATTEMPT_SECONDS = 15.0   # per attempt, all told: the hard deadline
LEASE_SECONDS = 120.0    # a claimed delivery is not handed to another dispatcher for this long
MAX_ADDRESSES = 3        # checked addresses tried per attempt


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for a body (Standard Webhooks, v1 = HMAC-SHA256)."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class WebhookDispatcher:
    """Sends due webhook deliveries from the store; `start()` runs it in a daemon thread."""

    def __init__(self, store: JobStore, artifacts: ArtifactStore, settings: Settings, *,
                 transport: httpx.AsyncBaseTransport | None = None, resolver: Resolver = system_resolver,
                 ssl_context: ssl.SSLContext | None = None, attempt_seconds: float = ATTEMPT_SECONDS,
                 per_receiver: int = PER_RECEIVER) -> None:
        self.store, self.artifacts, self.settings = store, artifacts, settings
        self.resolver, self._transport = resolver, transport
        self.attempt_seconds, self.per_receiver = attempt_seconds, per_receiver
        self._ssl = ssl_context or ssl.create_default_context(cafile=certifi.where())
        self.poll_seconds = min(1.0, max(0.05, settings.webhook_backoff_seconds / 2))
        self._stop = threading.Event()
        self._wake = threading.Event()  # a send finished (or stop): claim again without waiting out the poll
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: dict[Future[bool], str] = {}  # each send under way: its receiver
        self._dns: ThreadPoolExecutor | None = None  # lookups: a hung one outlives its attempt, not the deadline
        self._dns_lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._pool = ThreadPoolExecutor(SLOTS, thread_name_prefix="webhook-send")
        self._thread = threading.Thread(target=self._loop, name="webhook-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop claiming; a send in flight may finish within `timeout` (an unfinished one is sent
        again once its lease runs out)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for pool in (self._pool, self._dns):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._dns = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                started = self.dispatch()
            except NotImplementedError as exc:
                log.warning("webhooks: this job store cannot dispatch webhooks (%s); dispatcher stopped", exc)
                return
            except Exception:  # the store may be briefly unreachable: try again next round
                log.exception("webhooks: dispatch round failed")
                started = 0
            if not started:
                self._wake.wait(self.poll_seconds)
            self._wake.clear()  # dispatch() next sees every send that finished before this

    def dispatch(self) -> int:
        """Claim as many due deliveries as there are free slots, none to a receiver already at its
        cap, and start sending each; no waiting for sends already under way. How many were started."""
        self._in_flight = {f: origin for f, origin in self._in_flight.items() if not f.done()}
        free = SLOTS - len(self._in_flight)
        if free <= 0 or self._pool is None:
            return 0
        claimed = self.store.claim_deliveries(free, LEASE_SECONDS, per_origin=self.per_receiver,
                                              busy=Counter(self._in_flight.values()))
        for delivery in claimed:
            future = self._pool.submit(self._deliver_logged, delivery)
            self._in_flight[future] = delivery_origin(delivery["url"])
            future.add_done_callback(lambda _: self._wake.set())
        return len(claimed)

    def _deliver_logged(self, delivery: dict[str, Any]) -> bool:
        try:
            return self.deliver(delivery)
        except Exception:  # recording the outcome failed: the lease runs out and it is sent again
            log.exception("webhook %s: attempt not recorded", delivery["id"])
            return False

    # -- one round, in the caller's thread (tests, tools) -----------------------------------
    def run_once(self) -> int:
        """Claim up to BATCH due deliveries and send them one after another; how many were attempted."""
        batch = self.store.claim_deliveries(BATCH, LEASE_SECONDS)
        for delivery in batch:
            self.deliver(delivery)
        return len(batch)

    def deliver(self, delivery: dict[str, Any]) -> bool:
        """One attempt at one delivery, its outcome recorded in the store; True when delivered."""
        msg_id = delivery["id"]
        try:
            job = self.store.get(delivery["job_id"])
        except NotFound:
            self.store.finish_delivery(msg_id, False, "the generation was deleted before delivery", None)
            return False
        body = json.dumps(self.payload(delivery, job), separators=(",", ":")).encode()
        try:
            ok, error = self.post(delivery["url"], msg_id, self.store.webhook_secret(delivery["owner"]), body)
        except Exception as exc:  # noqa: BLE001 - any failure is a failed attempt, retried
            ok, error = False, f"{type(exc).__name__}: {exc}"
        if ok:
            self.store.finish_delivery(msg_id, True)
            log.info("webhook %s (%s for %s): delivered", msg_id, delivery["event_type"], job.id)
            return True
        retry_at = next_attempt_at(delivery, self.settings.webhook_backoff_seconds)
        self.store.finish_delivery(msg_id, False, error, retry_at)
        if retry_at is None:
            log.warning("webhook %s (%s for %s): giving up after %d attempts: %s", msg_id,
                        delivery["event_type"], job.id, delivery["attempts"] + 1, error)
        else:
            log.info("webhook %s (%s for %s): attempt %d failed (%s); next in %.1f s", msg_id,
                     delivery["event_type"], job.id, delivery["attempts"] + 1, error, retry_at - time.time())
        return False

    # -- the body ---------------------------------------------------------------------------
    def payload(self, delivery: dict[str, Any], job: Job) -> dict[str, Any]:
        """`{type, timestamp, data}`: data is the generation as it is now (AIML status enum)."""
        out = job.outputs or {}
        done = job.status == JobStatus.COMPLETED
        spec = job.params.get("spec", {})
        data = {
            "id": job.id,
            "object": "video.generation",
            "status": AIML_STATUS[job.status],
            "model": job.model,
            "progress": job.progress,
            "created": int(job.created_at),
            "video_url": self.media_url(out.get("video"), job) if done else None,
            "thumbnail_url": self.media_url(out.get("thumbnail"), job) if done else None,
            "duration_seconds": spec.get("duration"),
            "has_audio": out.get("has_audio") if done else None,
            "width": out.get("width") if done else None,
            "height": out.get("height") if done else None,
            "error": job.error,
            "prompt": spec.get("prompt"),
            "seed": spec.get("seed"),
            "expires_at": int(job.expires_at) if job.expires_at else None,
        }
        return {"type": delivery["event_type"], "timestamp": _iso(float(delivery["created_at"])), "data": data}

    def media_url(self, key: str | None, job: Job) -> str | None:
        """As the api links media: presigned where the store signs, else `<public_url>/media/<key>`
        (None without a public URL: a standalone worker needs CLIPFORGE_PUBLIC_URL for links)."""
        return artifact_url(self.artifacts, key, job.expires_at, self.settings.public_url)

    # -- the request ------------------------------------------------------------------------
    def post(self, url: str, msg_id: str, secret: str, body: bytes) -> tuple[bool, str | None]:
        """POST a signed body, guarded and pinned to a checked address, within the attempt's hard
        deadline; (delivered, error)."""
        return asyncio.run(self._post_by_deadline(url, msg_id, secret, body))

    async def _post_by_deadline(self, url: str, msg_id: str, secret: str, body: bytes) -> tuple[bool, str | None]:
        try:
            async with asyncio.timeout(self.attempt_seconds):
                return await self._post(url, msg_id, secret, body)
        except TimeoutError:
            return False, f"no complete answer within {self.attempt_seconds:g} s (the attempt's deadline)"

    def _lookups(self) -> ThreadPoolExecutor:
        with self._dns_lock:
            if self._dns is None:
                self._dns = ThreadPoolExecutor(4, thread_name_prefix="webhook-dns")
            return self._dns

    async def _post(self, url: str, msg_id: str, secret: str, body: bytes) -> tuple[bool, str | None]:
        try:
            checked = await asyncio.get_running_loop().run_in_executor(
                self._lookups(), check_public_url, url, "webhook_url", self.settings.allow_private_urls, self.resolver)
        except InvalidInput as exc:
            return False, exc.message
        timestamp = int(time.time())
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "webhook-id": msg_id,
                   "webhook-timestamp": str(timestamp), "webhook-signature": sign(secret, msg_id, timestamp, body)}
        error = "no address to connect to"
        for address in checked.addresses[:MAX_ADDRESSES]:
            try:
                status = await self._send(_pinned_post(checked, address, headers, body))
            except httpx.ConnectError as exc:  # try the host's next checked address
                error = f"could not connect: {exc or type(exc).__name__}"
                continue
            except httpx.TimeoutException as exc:
                return False, f"timed out ({type(exc).__name__}; {CONNECT_SECONDS:g} s to connect, " \
                              f"{READ_SECONDS:g} s per read)"
            except httpx.HTTPError as exc:
                return False, f"{type(exc).__name__}: {exc}"
            if 200 <= status < 300:
                return True, None
            return False, f"HTTP {status}"
        return False, error

    async def _send(self, request: httpx.Request) -> int:
        transport = self._transport or httpx.AsyncHTTPTransport(verify=self._ssl, trust_env=False, retries=0)
        timeout = httpx.Timeout(READ_SECONDS, connect=CONNECT_SECONDS)
        async with httpx.AsyncClient(transport=transport, trust_env=False, follow_redirects=False,
                                     timeout=timeout) as client:
            response = await client.send(request, stream=True)
            try:
                return response.status_code  # the body is not needed
            finally:
                await response.aclose()


def _pinned_post(checked: CheckedUrl, address: str, headers: dict[str, str], body: bytes) -> httpx.Request:
    """A POST to the checked address itself, carrying the URL's host name for Host and TLS."""
    headers = dict(headers)
    extensions: dict[str, str] = {}
    target = checked.url
    if checked.host not in checked.addresses:  # a name, not an IP literal
        target = checked.url.copy_with(host=address)
        headers["Host"] = checked.host if checked.url.port is None else f"{checked.host}:{checked.port}"
        extensions["sni_hostname"] = checked.host
    return httpx.Request("POST", target, headers=headers, content=body, extensions=extensions)
