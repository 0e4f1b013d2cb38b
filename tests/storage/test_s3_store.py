"""The S3 artifact store against a local S3-compatible server (moto, presigned URLs checked as S3 does)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from clipforge.core.settings import Settings
from clipforge.storage.base import open_artifacts
from clipforge.storage.s3 import MAX_PRESIGN_SECONDS, S3ArtifactStore
from storage.s3_server import ACCESS_KEY, REGION, SECRET_KEY, S3Server


@pytest.fixture
def store(s3_server: S3Server) -> S3ArtifactStore:
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket)
    settings = Settings(storage_url=f"s3://{bucket}/clips/v1", s3_endpoint_url=s3_server.endpoint_url,
                        s3_region=REGION, s3_access_key_id=ACCESS_KEY, s3_secret_access_key=SECRET_KEY,
                        s3_addressing_style="path")
    opened = open_artifacts(settings.resolved_storage_url, **settings.storage_options)
    assert isinstance(opened, S3ArtifactStore)
    return opened


def test_put_get_exists_under_the_prefix(store, tmp_path: Path, s3_server: S3Server):
    data = bytes(range(256)) * 4000  # ~1 MB
    src = tmp_path / "output.mp4"
    src.write_bytes(data)
    store.put_file("tok1/output.mp4", src, "video/mp4")
    store.put_bytes("tok1/thumbnail.jpg", b"\xff\xd8jpeg", "image/jpeg")
    assert store.get_bytes("tok1/output.mp4") == data
    assert store.exists("tok1/thumbnail.jpg") and not store.exists("tok1/missing.jpg")
    head = s3_server.client().head_object(Bucket=store.bucket, Key="clips/v1/tok1/output.mp4")
    assert head["ContentType"] == "video/mp4" and head["ContentLength"] == len(data)
    assert store.local_path("tok1/output.mp4") is None
    with pytest.raises(FileNotFoundError):
        store.get_bytes("tok1/missing.jpg")
    for bad in ("../escape", "/abs", "a/../../b"):
        with pytest.raises(ValueError):
            store.put_bytes(bad, b"x", "text/plain")


def test_presigned_download_over_plain_http(store):
    store.put_bytes("tok2/output.mp4", b"\x00\x00\x00\x18ftypmp42 video bytes", "video/mp4")
    url = store.presigned_url("tok2/output.mp4", 3600)
    assert url.startswith(store.client.meta.endpoint_url) and "X-Amz-Expires=3600" in url
    reply = httpx.get(url)
    assert reply.status_code == 200
    assert reply.content == b"\x00\x00\x00\x18ftypmp42 video bytes"
    assert reply.headers["content-type"] == "video/mp4"
    tampered = url.replace("tok2/output.mp4", "tok2/other.mp4")
    assert httpx.get(tampered).status_code == 403  # the signature covers the key
    assert "X-Amz-Expires=604800" in store.presigned_url("tok2/output.mp4", 10 * MAX_PRESIGN_SECONDS)


def test_presigned_url_fails_after_its_expiry(store, s3_server: S3Server):
    store.put_bytes("tok3/output.mp4", b"soon gone", "video/mp4")
    # Two URLs signed in the same second: one for an hour, one for a second. A 1-second URL may already be
    # expired by its first use on a loaded machine (CI saw that), so only the long one is read before the
    # wait; after it, the short one is refused for its age while the long one still works.
    short = store.presigned_url("tok3/output.mp4", 1)
    long = store.presigned_url("tok3/output.mp4", 3600)
    assert "X-Amz-Expires=1&" in short and "X-Amz-Expires=3600&" in long
    time.sleep(2.1)
    reply = httpx.get(short)
    assert reply.status_code == 403
    assert "Request has expired" in reply.text and "AccessDenied" in reply.text
    assert httpx.get(long).content == b"soon gone"


def test_delete_prefix_removes_everything_under_it_only(store, s3_server: S3Server):
    for i in range(1005):  # more than one page of ListObjectsV2 / DeleteObjects
        store.put_bytes(f"tok4/part-{i:04d}.bin", b"x", "application/octet-stream")
    store.put_bytes("tok40/keep.bin", b"keep", "application/octet-stream")  # shares the string prefix only
    url = store.presigned_url("tok4/part-0000.bin", 3600)
    assert store.delete_prefix("tok4") == 1005
    assert not store.exists("tok4/part-0000.bin") and not store.exists("tok4/part-1004.bin")
    assert store.get_bytes("tok40/keep.bin") == b"keep"
    assert httpx.get(url).status_code == 404  # a signed URL for a deleted object finds nothing
    assert store.delete_prefix("tok4") == 0


def test_storage_url_must_name_a_bucket():
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        S3ArtifactStore.from_url("s3:///prefix-only")
