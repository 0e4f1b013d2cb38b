"""The manifests give every container a read-only root filesystem with only /tmp and $HOME (= CLIPFORGE_HOME)
writable. This runs `clipforge serve` (the api and an embedded worker: both roles) that way, in a private
mount namespace, and has it make a clip with spoken dialogue."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from helpers import free_port, wait_terminal

ROOT = Path(__file__).resolve().parents[2]


def can_remount() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not can_remount(), reason="needs root and `unshare -m` to remount / read-only")
def test_serve_and_its_worker_run_with_a_read_only_root():
    port = free_port()
    clipforge = Path(sys.executable).parent / "clipforge"
    # A checkout under /tmp (CI may clone there) is bound back, read-only, over the fresh /tmp.
    keep = (f"mount --bind {ROOT} /mnt && " if ROOT.is_relative_to("/tmp") else "")
    restore = (f"mkdir -p {ROOT} && mount --bind /mnt {ROOT} && mount -o remount,bind,ro {ROOT} && "
               if keep else "")
    script = (f"{keep}mount -t tmpfs tmpfs /tmp && {restore}mount -o remount,bind,ro / && mkdir -p /tmp/data && cd / "
              f"&& if touch {ROOT}/.read-only-probe 2>/dev/null; then exit 99; fi "
              f"&& HOME=/tmp/data CLIPFORGE_HOME=/tmp/data PYTHONDONTWRITEBYTECODE=1 CLIPFORGE_API_KEYS=ro-key "
              f"exec {clipforge} serve --port {port} --workers 1")
    server = subprocess.Popen(["unshare", "-m", "bash", "-c", script], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": "Bearer ro-key"},
                              timeout=30)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        assert server.poll() is None, server.stdout.read()
        created = client.post("/v2/video/generations", json={"model": "preview", "aspect_ratio": "1:1",
                                                               "prompt": 'waves on a beach, "we made it"'})
        assert created.status_code == 200, created.text
        body = wait_terminal(client, created.json()["id"], timeout=240)
        assert body["status"] == "completed", body
        assert client.get(body["video"]["url"].replace(str(client.base_url), "")).content[4:8] == b"ftyp"
    finally:
        server.terminate()
        output = server.communicate(timeout=60)[0]
    assert "Read-only file system" not in output, output[-3000:]
