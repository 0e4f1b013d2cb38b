"""Status polls, the api's hot path, served without FastAPI's per-request machinery.

A poll is auth (with the rate limiter), one store read, the view and one JSON encoding. FastAPI's
routing, dependency solving and response handling cost more than all of that together
(`bench/api.py` measures a poll against a bare endpoint), so each dialect's poll handler is also
mounted as a plain Starlette route at the front of the app's routes: the same handler, the same
answers and errors (the app's exception handlers wrap every route). The path form's id converter
leaves ids ending in `/events` or `/content` to the routes for those (`.../events` streams,
`.../content` downloads); the query form (`?generation_id=`, the AIML contract and the SDK's poll)
only matches when the parameter is there, so a listing goes on to its FastAPI route. The FastAPI
routes stay registered, for the OpenAPI document and as the fallback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import QueryParams
from starlette.routing import Match, Route
from starlette.types import Scope

from clipforge.api.auth import require_key

PollHandler = Callable[[str, Request, str], Awaitable[Response]]


class PollIdConvertor(Convertor[str]):
    """A generation id (ids hold `/`: `<uuid>:<model id>`) that is not a sub-resource path."""

    regex = r".+(?<!/events)(?<!/content)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("poll_id", PollIdConvertor())


def serve_poll_lean(app: FastAPI, path: str, handler: PollHandler, param: str) -> None:
    """Serve GET `path` (with `{param:poll_id}` in it) by `handler(id, request, owner)`, ahead of
    every other route."""

    async def endpoint(request: Request) -> Response:
        return await handler(request.path_params[param], request, await require_key(request))

    app.router.routes.insert(0, Route(path, endpoint, methods=["GET"], include_in_schema=False))


class QueryPollRoute(Route):
    """A route for GET `path?<param>=<id>` only; without the parameter (a listing) it does not match."""

    def __init__(self, path: str, handler: PollHandler, param: str) -> None:
        async def endpoint(request: Request) -> Response:
            return await handler(request.path_params[param], request, await require_key(request))

        super().__init__(path, endpoint, methods=["GET"], include_in_schema=False)
        self.param = param

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match == Match.NONE:
            return match, child
        value = QueryParams(scope.get("query_string", b"")).get(self.param)
        if not value:
            return Match.NONE, {}
        child["path_params"] = {**child.get("path_params", {}), self.param: value}  # parsed once
        return match, child


def serve_query_poll_lean(app: FastAPI, path: str, handler: PollHandler, param: str) -> None:
    """Serve GET `path?<param>=<id>` by `handler(id, request, owner)`, ahead of every other route."""
    app.router.routes.insert(0, QueryPollRoute(path, handler, param))
