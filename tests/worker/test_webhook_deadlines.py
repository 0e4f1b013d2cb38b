"""Webhook attempts against real sockets: every attempt has a hard deadline however slowly a receiver
trickles its answer, and one slow receiver does not hold up deliveries to another."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from clipforge.core.job import Job, JobStatus, new_job_id
from clipforge.core.settings import Settings
from clipforge.jobs.memory import MemoryJobStore
from clipforge.storage.local import LocalArtifactStore
from clipforge.worker.webhooks import WebhookDispatcher

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
    slow_jobs = [finished_job(store, "slow-key", f"http://127.0.0.1:{slow.port}/hook") for _ in range(6)]
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
