"""Bearer-key auth. A key's owner id is a hash of the key, so raw keys never reach the store."""

from __future__ import annotations

import hashlib

from fastapi import Request
from starlette.exceptions import HTTPException


def owner_id(key: str) -> str:
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:20]


class KeyRing:
    def __init__(self, keys: tuple[str, ...]) -> None:
        self._owners = {hashlib.sha256(k.encode()).digest(): owner_id(k) for k in keys}

    def owner(self, presented: str) -> str | None:
        return self._owners.get(hashlib.sha256(presented.encode()).digest())


def require_key(request: Request) -> str:
    """FastAPI dependency: the caller's owner id, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "missing API key: send 'Authorization: Bearer <key>'")
    owner = request.app.state.services.keys.owner(token.strip())
    if owner is None:
        raise HTTPException(401, "invalid API key")
    return owner
