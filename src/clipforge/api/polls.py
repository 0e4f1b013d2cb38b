"""Status polls, the api's hot path, served without FastAPI's per-request machinery.

A poll is auth (with the rate limiter), one store read, the view and one JSON encoding. FastAPI's
dependency solving and response handling cost more than all of that together (`bench/api.py`
measures a poll against a bare endpoint), so each dialect's poll handler is also mounted as a plain
Starlette route, in the place its FastAPI route has in the routing order: the same handler, the same
answers and errors (the app's exception handlers wrap every route). The FastAPI route stays
registered for the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette.routing import Route

from clipforge.api.auth import require_key

PollHandler = Callable[[str, Request, str], Awaitable[Response]]


def serve_poll_lean(router: APIRouter, path: str, handler: PollHandler, param: str) -> None:
    """Serve GET `path` with `handler(path_param, request, owner)` through a plain route placed just
    before the router's FastAPI route for it (routes added earlier, like `.../events`, still match
    first). Call before the router is included in the app; calling again changes nothing."""

    async def endpoint(request: Request) -> Response:
        return await handler(request.path_params[param], request, await require_key(request))

    if any(type(r) is Route and r.path == path for r in router.routes):
        return
    index = next(i for i, r in enumerate(router.routes)
                 if isinstance(r, APIRoute) and r.path == path and "GET" in (r.methods or ()))
    router.routes.insert(index, Route(path, endpoint, methods=["GET"], include_in_schema=False))
