"""The web playground: one self-contained page at `/playground` (and `/` redirects there).

The page needs no build step and loads nothing from elsewhere: its CSS and JavaScript live in
`api/static/` and are inlined into the HTML when it is served, under a per-response CSP nonce. It is
served without auth; the page asks for an API key once, keeps it in the browser's localStorage and
sends it as `Authorization: Bearer` on every API call it makes.
"""

from __future__ import annotations

import functools
import secrets
from importlib import resources

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse

router = APIRouter(tags=["playground"], include_in_schema=False)

STATIC = resources.files("clipforge.api") / "static"


@functools.cache
def _asset(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def page(nonce: str) -> str:
    """The playground HTML with its stylesheet and script inlined."""
    html = _asset("playground.html")
    return (html.replace("__NONCE__", nonce)
            .replace("/*__CSS__*/", _asset("playground.css"))
            .replace("/*__JS__*/", _asset("playground.js")))


def csp(nonce: str) -> str:
    # Scripts and styles only from this response; API calls only to this origin; media may come from
    # presigned storage URLs on another host, so images and video allow any http(s) source.
    return ("default-src 'none'; "
            f"script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "img-src 'self' data: blob: http: https:; media-src 'self' blob: http: https:; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


@router.get("/playground")
async def playground() -> HTMLResponse:
    """The playground page (no auth: the page itself asks for the key)."""
    nonce = secrets.token_urlsafe(16)
    return HTMLResponse(page(nonce), headers={
        "Content-Security-Policy": csp(nonce), "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/playground", status_code=307)


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
