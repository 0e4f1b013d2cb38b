"""Artifacts in a local directory, written to a temporary name and renamed into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from clipforge.storage.base import ArtifactStore


class LocalArtifactStore(ArtifactStore):
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"artifact key escapes the store: {key!r}")
        return path

    def _write(self, key: str, write: callable) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        def copy(out) -> None:  # noqa: ANN001
            with open(path, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)

        self._write(key, copy)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self._write(key, lambda out: out.write(data))

    def get_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete_prefix(self, prefix: str) -> int:
        folder = self._path(prefix)
        if not folder.is_dir():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        return count

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None
