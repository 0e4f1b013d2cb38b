"""The SDK's own messages: a non-image is called a non-image; OS error codes come out in words."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from clipforge.client import APIConnectionError, Client, ClipforgeClientError
from clipforge.client._base import image_ref, transport_words
from helpers import free_port


def test_a_non_image_file_is_refused_before_sending(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ClipforgeClientError, match=r"image: .*notes.txt is not an image \(JPEG, PNG or WEBP"):
        image_ref(tmp_path / "notes.txt", "image")
    with pytest.raises(ClipforgeClientError, match="tail_image: 5 bytes is not an image"):
        image_ref(b"hello", "tail_image")
    assert image_ref(b"\x89PNG\r\n\x1a\n....", "image").startswith("data:image/png;base64,")


def test_os_error_codes_become_words():
    dns = httpx.ConnectError("[Errno -2] Name or service not known")
    dns.__cause__ = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert transport_words(dns) == "the host name was not found (DNS)"
    assert transport_words(httpx.ConnectError("[Errno 111] Connection refused")).startswith("connection refused")
    assert transport_words(httpx.ConnectError("[Errno 99999] Something odd")) == "Something odd"


def test_a_refused_connection_reads_in_words():
    with Client(f"http://127.0.0.1:{free_port()}", "k", max_retries=0) as client:
        with pytest.raises(APIConnectionError) as err:
            client.get("x")
    assert "connection refused" in str(err.value) and "Errno" not in str(err.value)
