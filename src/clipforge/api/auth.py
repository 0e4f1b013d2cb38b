"""Bearer-key auth and per-key request limits."""

from __future__ import annotations

import hashlib

from fastapi import Request
from starlette.exceptions import HTTPException

from clipforge.core.keys import KeyPolicy, owner_id

__all__ = ["KeyRing", "caller_policy", "owner_id", "require_key", "require_policy"]


class KeyRing:
    def __init__(self, policies: dict[str, KeyPolicy]) -> None:
        self._policies = {hashlib.sha256(k.encode()).digest(): p for k, p in policies.items()}

    def policy(self, presented: str) -> KeyPolicy | None:
        return self._policies.get(hashlib.sha256(presented.encode()).digest())


def caller_policy(request: Request) -> KeyPolicy:
    """The caller's key policy (401 without a valid key, 429 over its rate)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "missing API key: send 'Authorization: Bearer <key>'")
    svc = request.app.state.services
    policy = svc.keys.policy(token.strip())
    if policy is None:
        raise HTTPException(401, "invalid API key")
    svc.rate_limiter.hit(policy)
    request.state.policy = policy
    return policy


# Dependencies are `async def` so FastAPI runs them on the event loop: they never block, and a sync
# dependency costs a threadpool hop per request.
async def require_policy(request: Request) -> KeyPolicy:
    """FastAPI dependency: the caller's key policy."""
    return caller_policy(request)


async def require_key(request: Request) -> str:
    """FastAPI dependency: the caller's owner id."""
    return caller_policy(request).owner
