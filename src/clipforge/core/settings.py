"""Settings, built once at the edge (CLI or app factory) and passed down."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Settings:
    home: Path = Path(".clipforge")
    api_keys: tuple[str, ...] = ()
    database_url: str | None = None
    storage_url: str | None = None
    public_url: str | None = None
    models_config: Path | None = None
    keys_file: Path | None = None
    allow_private_urls: bool = False
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    max_attempts: int = 3
    retention_seconds: float = 7 * 24 * 3600
    max_queue_seconds: float = 86400.0  # a job no worker starts within this long of being queued fails (0: never)
    max_image_bytes: int = 10 * 1024 * 1024
    fetch_timeout_seconds: float = 15.0
    poll_retry_after_seconds: int = 2
    shutdown_grace_seconds: float = 30.0  # SIGTERM: a running job may finish this long, else it is handed back
    log_format: str = "text"  # or "json"
    metrics_auth: bool = False  # /metrics needs an API key
    webhook_backoff_seconds: float = 5.0  # first webhook retry; doubles per attempt, capped at 1 h
    s3_endpoint_url: str | None = None  # S3-compatible servers (MinIO, R2, ...); unset: AWS
    s3_region: str | None = None
    s3_access_key_id: str | None = None  # unset: boto3's own chain (AWS_* env, profile, instance role)
    s3_secret_access_key: str | None = None
    s3_addressing_style: str | None = None  # "path" | "virtual" | "auto"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'clipforge.db').resolve()}"

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or f"file://{(self.home / 'media').resolve()}"

    @property
    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for `open_artifacts` (S3 endpoint and credentials), unset ones left out."""
        options = {"endpoint_url": self.s3_endpoint_url, "region": self.s3_region,
                   "access_key_id": self.s3_access_key_id, "secret_access_key": self.s3_secret_access_key,
                   "addressing_style": self.s3_addressing_style}
        return {k: v for k, v in options.items() if v}

    def with_keys(self) -> Settings:
        """These settings with at least one API key.

        With no keys configured, a random key is made once and kept in `<home>/api-key`, so a
        fresh install is never open to anyone who can reach the port.
        """
        if self.api_keys or self.keys_file:
            return self
        path = self.home / "api-key"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            path.write_text("cf-" + secrets.token_urlsafe(24) + "\n")
            path.chmod(0o600)
        return replace(self, api_keys=(path.read_text().strip(),))
