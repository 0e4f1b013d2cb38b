"""Artifacts in an S3-compatible bucket (AWS S3, MinIO, R2, Ceph...) through boto3.

`s3://bucket/prefix`: every key is stored as `prefix/key`. Media is served by presigned GET URLs
(the api answers with them), so downloads go straight to the bucket, never through the api.
Endpoint, region, credentials and addressing style come from settings (CLIPFORGE_S3_*); unset
credentials fall back to boto3's own chain (AWS_* env, shared profile, instance role).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from clipforge.core.errors import ConfigError
from clipforge.storage.base import ArtifactStore

MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4's limit


class S3ArtifactStore(ArtifactStore):
    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, region: str | None = None,
                 access_key_id: str | None = None, secret_access_key: str | None = None,
                 addressing_style: str | None = None, client: Any = None) -> None:
        if not bucket:
            raise ConfigError("S3 storage URL needs a bucket: s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError as exc:
                raise ConfigError(f"s3:// storage needs the s3 extra ({exc.name} is not installed): "
                                  "scripts/install.sh image, or pip install 'clipforge[s3]'") from None

            config = Config(signature_version="s3v4", retries={"max_attempts": 5, "mode": "standard"},
                            s3={"addressing_style": addressing_style or "auto"})
            client = boto3.session.Session().client(
                "s3", endpoint_url=endpoint_url, region_name=region, aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key, config=config)
        self.client = client

    @classmethod
    def from_url(cls, url: str, **options: Any) -> S3ArtifactStore:
        """`s3://bucket/prefix` plus the keyword options of the constructor."""
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ConfigError(f"S3 storage URL must look like s3://bucket/prefix, got {url!r}")
        return cls(parsed.netloc, parsed.path, **options)

    def _key(self, key: str) -> str:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"artifact key escapes the store: {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        # upload_file switches to multipart for large files and retries parts.
        self.client.upload_file(str(path), self.bucket, self._key(key), ExtraArgs={"ContentType": content_type})

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(key) from None

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def delete_prefix(self, prefix: str) -> int:
        folder = self._key(prefix.rstrip("/")) + "/"
        deleted = 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:  # at most 1000 per page, the most DeleteObjects takes
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
                deleted += len(objects)
        return deleted

    def presigned_url(self, key: str, expires_in: int) -> str | None:
        seconds = max(1, min(int(expires_in), MAX_PRESIGN_SECONDS))
        return self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": self._key(key)},
                                                  ExpiresIn=seconds)
