"""The interactive API docs at `/docs`: Swagger UI served from this server, so the page works offline.

FastAPI's own `/docs` and `/redoc` load their scripts and styles from a CDN; the app turns them off and this
router serves the same Swagger UI page with its assets from the `swagger-ui-bundle-v2` package (Swagger UI's
own dist files, Apache-2.0) under `/docs/assets/`. The page refers to them by relative URLs, so it also works
behind a path prefix, and its Content-Security-Policy lets it load nothing from elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from starlette.exceptions import HTTPException
from swagger_ui_bundle import swagger_ui_path

router = APIRouter(tags=["docs"], include_in_schema=False)

ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
          "favicon-32x32.png": "image/png"}
ASSET_DIR = Path(str(swagger_ui_path))
# Swagger UI draws its icons from data: URIs and talks only to this origin (the OpenAPI document, "Try it out").
CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def docs_page(title: str) -> HTMLResponse:
    """Swagger UI for `openapi.json`, every asset a relative URL on this server; no online validator badge."""
    page = get_swagger_ui_html(
        openapi_url="openapi.json", title=f"{title} - API docs",
        swagger_js_url="docs/assets/swagger-ui-bundle.js", swagger_css_url="docs/assets/swagger-ui.css",
        swagger_favicon_url="docs/assets/favicon-32x32.png", oauth2_redirect_url=None,
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False})
    page.headers["Content-Security-Policy"] = CSP
    page.headers["X-Content-Type-Options"] = "nosniff"
    return page


@router.get("/docs")
async def docs() -> HTMLResponse:
    """Swagger UI (no auth: it lists the routes; calls made from it carry the key entered in it)."""
    return docs_page("clipforge")


@router.get("/docs/assets/{name}")
async def docs_asset(name: str) -> FileResponse:
    """One of Swagger UI's files, cached for a day (the package version changes their content, not their name)."""
    if name not in ASSETS:
        raise HTTPException(404, f"no docs asset named {name!r}")
    return FileResponse(ASSET_DIR / name, media_type=ASSETS[name],
                        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"})


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
