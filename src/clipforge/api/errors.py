"""One error envelope for every failure, in both dialects.

`{"statusCode", "message", "path", "requestId", "timestamp"}` (AIML) plus an OpenAI-style
`error: {message, type, param, code}` so the official SDKs show the message; validation adds
`detail: [{loc, msg, type}]`.
"""

from __future__ import annotations

import datetime as dt
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from clipforge.core.errors import Conflict, InvalidInput, NotFound, NotReady, RateLimited

log = logging.getLogger(__name__)

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          409: "conflict_error", 413: "invalid_request_error", 429: "rate_limit_error",
          500: "server_error", 503: "service_unavailable"}


def error_response(request: Request, status: int, message: str, *, param: str | None = None,
                   code: str | None = None, detail: list[dict] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {
        "statusCode": status,
        "message": message,
        "path": request.url.path,
        "requestId": getattr(request.state, "request_id", None),
        "timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        "error": {"message": message, "type": _TYPES.get(status, "error"), "param": param, "code": code},
    }
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=headers)


def _invalid(request: Request, exc: InvalidInput) -> JSONResponse:
    field = [exc.field] if exc.location == "header" else exc.field.split(".")
    detail = [{"loc": [exc.location, *field], "msg": exc.message, "type": exc.rule}]
    return error_response(request, 400, exc.message, param=exc.field, code=exc.rule, detail=detail)


def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
              for e in exc.errors()]
    first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
    field = ".".join(str(p) for p in first["loc"] if p not in ("body", "query", "path"))
    return error_response(request, 400, f"{field or 'request'}: {first['msg']}", param=field or None,
                          code="invalid", detail=detail)


def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else "error"
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    return error_response(request, exc.status_code, message, headers=getattr(exc, "headers", None))


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, 500, "internal error; the request id is in the server log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(InvalidInput, _invalid)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(NotFound, lambda r, e: error_response(r, 404, str(e), code="not_found"))
    app.add_exception_handler(Conflict, lambda r, e: error_response(r, 409, str(e), code="conflict"))
    app.add_exception_handler(
        RateLimited, lambda r, e: error_response(r, 429, str(e), code="rate_limited",
                                                 headers={"Retry-After": str(max(1, round(e.retry_after)))}))
    app.add_exception_handler(
        NotReady, lambda r, e: error_response(r, 503, str(e), code="not_ready",
                                              headers={"Retry-After": str(max(1, round(e.retry_after)))}))
    app.add_exception_handler(Exception, _unexpected)
