"""The artifact store interface and the factory that picks a backend from a URL."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

from clipforge.core.errors import ConfigError


class ArtifactStore(abc.ABC):
    """Blobs by key (`<token>/output.mp4`). Keys hold unguessable tokens chosen by the caller."""

    @abc.abstractmethod
    def put_file(self, key: str, path: Path, content_type: str) -> None: ...

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The blob; FileNotFoundError when absent."""

    @abc.abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob under `prefix/`; returns how many."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    def local_path(self, key: str) -> Path | None:
        """A path on this machine for the blob, when the backend has one (for file responses)."""
        return None

    def presigned_url(self, key: str, expires_in: int) -> str | None:
        """A direct download URL, when the backend can sign one; else media is served by the api."""
        return None


def artifact_url(artifacts: ArtifactStore, key: str | None, expires_at: float | None,
                 base_url: str | None) -> str | None:
    """How clients reach an artifact: a presigned URL where the store signs (valid until the
    generation expires), else `<base_url>/media/<key>` served by the api; None without either."""
    if not key:
        return None
    if expires_at:
        import time

        signed = artifacts.presigned_url(key, max(60, int(expires_at - time.time())))
        if signed:
            return signed
    if not base_url:
        return None
    return f"{base_url.rstrip('/')}/media/{key}"


def open_artifacts(url: str, **s3_options: Any) -> ArtifactStore:
    """`file:///abs/dir` (local directory) or `s3://bucket/prefix`; `s3_options` (endpoint_url, region,
    access_key_id, secret_access_key, addressing_style: `Settings.storage_options`) apply to S3 only."""
    if url.startswith("file://"):
        from clipforge.storage.local import LocalArtifactStore

        return LocalArtifactStore(Path(url.removeprefix("file://")))
    if url.startswith("s3://"):
        from clipforge.storage.s3 import S3ArtifactStore

        return S3ArtifactStore.from_url(url, **s3_options)
    raise ConfigError(f"storage URL must start with file:// or s3://, got {url!r}")
