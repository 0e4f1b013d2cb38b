"""Webhook attempts against real sockets: every attempt has a hard deadline however slowly a receiver
trickles its answer, one slow receiver does not hold up deliveries to another, and one hanging
receiver with a backlog gets at most PER_RECEIVER of the dispatcher's slots."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from clipforge.core.job import Job, JobStatus, new_job_id
from clipforge.core.settings import Settings
from clipforge.jobs.memory import MemoryJobStore
from clipforge.storage.local import LocalArtifactStore
from clipforge.worker.webhooks import PER_RECEIVER, SLOTS, WebhookDispatcher

DEADLINE = 1.0


class TrickleReceiver:
    """Accepts, reads the request, then sends a status line one byte every 0.2 s and never finishes
    (each read gets a byte well inside any read timeout, so only a total deadline ends the attempt)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
                if self.stop.wait(0.2):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


class HangingReceiver:
    """Reads each request and holds it unanswered until `recover()`, then answers 204 to the held
    ones and to any later at once. Counts the requests held open at once, receiver side."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.sock.getsockname()[1]
        self.recovered, self.lock = threading.Event(), threading.Lock()
        self.open = self.peak = 0
        self.arrivals: list[str] = []  # webhook-ids, in the order their requests were read
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.open += 1
                self.peak = max(self.peak, self.open)
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        with conn:
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head = data.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
                msg_id = next(line.split(":", 1)[1].strip() for line in head
                              if line.lower().startswith("webhook-id:"))
                with self.lock:
                    self.arrivals.append(msg_id)
                self.recovered.wait(60)
            finally:
                with self.lock:  # no longer held: counted down before the answer can free a slot
                    self.open -= 1
            conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")

    def recover(self) -> None:
        self.recovered.set()

    def close(self) -> None:
        self.recovered.set()
        self.sock.close()


class FastReceiver:
    def __init__(self) -> None:
        arrivals = self.arrivals = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                arrivals.append((time.monotonic(), self.headers["webhook-id"]))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def finished_job(store: MemoryJobStore, owner: str, url: str) -> str:
    job = Job(id=new_job_id("m"), owner=owner, model="m", engine="fixed",
              params={"spec": {"prompt": "p", "duration": 5, "seed": 1}}, webhook={"url": url})
    store.create(job)
    claimed = store.claim("w", ["fixed"], 60)
    store.finish(claimed.id, "w", JobStatus.COMPLETED, outputs={}, expires_at=time.time() + 3600)
    return claimed.id


def test_a_trickling_receiver_neither_outlives_the_deadline_nor_delays_another_receiver(tmp_path):
    slow, fast = TrickleReceiver(), FastReceiver()
    store = MemoryJobStore()
    settings = Settings(home=tmp_path, allow_private_urls=True, webhook_backoff_seconds=60)
    dispatcher = WebhookDispatcher(store, LocalArtifactStore(tmp_path / "media"), settings, attempt_seconds=DEADLINE)
    slow_jobs = [finished_job(store, "slow-key", f"http://127.0.0.1:{slow.port}/hook") for _ in range(PER_RECEIVER)]
    fast_job = finished_job(store, "fast-key", f"http://127.0.0.1:{fast.port}/hook")  # enqueued last
    started = time.monotonic()
    dispatcher.start()
    try:
        deadline = started + 10
        while not fast.arrivals or any(store.deliveries(j)[0]["attempts"] == 0 for j in slow_jobs):
            assert time.monotonic() < deadline, [store.deliveries(j)[0] for j in slow_jobs]
            time.sleep(0.02)
        ended = time.monotonic()
    finally:
        dispatcher.stop()
        slow.close()
        fast.close()
    arrived, msg_id = fast.arrivals[0]
    assert arrived - started < DEADLINE / 2  # not behind the slow receiver's attempts
    assert (store.deliveries(fast_job)[0]["id"], store.deliveries(fast_job)[0]["status"]) == (msg_id, "delivered")
    assert ended - started < DEADLINE + 1.5  # every slow attempt ended at its deadline, side by side
    for job_id in slow_jobs:
        [row] = store.deliveries(job_id)
        assert (row["status"], row["attempts"]) == ("pending", 1)
        assert "within 1 s (the attempt's deadline)" in row["last_error"]


def test_a_hanging_receiver_with_a_backlog_gets_at_most_its_cap_and_others_still_get_slots(tmp_path):
    hanging, fast = HangingReceiver(), FastReceiver()
    store = MemoryJobStore()
    settings = Settings(home=tmp_path, allow_private_urls=True, webhook_backoff_seconds=60)
    dispatcher = WebhookDispatcher(store, LocalArtifactStore(tmp_path / "media"), settings, attempt_seconds=60)
    backlog = SLOTS + 8  # more than every slot, all due before the other receiver's one
    hanging_jobs = [finished_job(store, "hanging-key", f"http://127.0.0.1:{hanging.port}/hook/{i}")
                    for i in range(backlog)]
    ids = [store.deliveries(j)[0]["id"] for j in hanging_jobs]
    fast_job = finished_job(store, "fast-key", f"http://127.0.0.1:{fast.port}/hook")
    started = time.monotonic()
    dispatcher.start()
    try:
        while not (fast.arrivals and hanging.open >= PER_RECEIVER) and time.monotonic() < started + 5:
            time.sleep(0.02)
        assert fast.arrivals, f"the other receiver's delivery waited behind the hanging one ({hanging.open} held)"
        fast_after = fast.arrivals[0][0] - started
        time.sleep(0.3)  # a moment for any send past the cap to show
        assert (hanging.open, hanging.peak) == (PER_RECEIVER, PER_RECEIVER)
        assert sorted(hanging.arrivals) == sorted(ids[:PER_RECEIVER])  # the oldest first
        now = time.time()
        for job_id in hanging_jobs[PER_RECEIVER:]:  # held back: still due, no attempt counted
            [row] = store.deliveries(job_id)
            assert (row["status"], row["attempts"], row["last_error"]) == ("pending", 0, None)
            assert row["next_attempt_at"] <= now

        hanging.recover()
        recovered = time.monotonic()
        while any(store.deliveries(j)[0]["status"] != "delivered" for j in hanging_jobs):
            assert time.monotonic() < recovered + 10, [store.deliveries(j)[0] for j in hanging_jobs]
            time.sleep(0.02)
        drained_after = time.monotonic() - recovered
    finally:
        dispatcher.stop()
        hanging.close()
        fast.close()
    assert fast_after < 5  # not behind the hanging receiver's attempts (their deadline is 60 s)
    assert store.deliveries(fast_job)[0]["status"] == "delivered"
    assert sorted(hanging.arrivals) == sorted(ids)  # each exactly once
    assert hanging.peak == PER_RECEIVER
    assert all(store.deliveries(j)[0]["attempts"] == 1 for j in hanging_jobs)
    print(f"fast delivery after {fast_after:.3f} s; {backlog} held deliveries drained "
          f"{PER_RECEIVER} at a time in {drained_after:.3f} s after recovery; peak {hanging.peak} open")
