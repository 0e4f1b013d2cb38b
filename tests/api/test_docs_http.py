"""The API docs page works offline: every asset it names is served by this server, none comes from elsewhere."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

from fastapi.testclient import TestClient

from clipforge.core.settings import Settings
from clipforge.jobs.memory import MemoryJobStore


def test_docs_page_uses_only_assets_this_server_serves(tmp_path: Path):
    from clipforge.api.app import create_app

    app = create_app(Settings(home=tmp_path, api_keys=("k1",)), store=MemoryJobStore())
    with TestClient(app, base_url="http://testserver") as client:
        page = client.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "http" not in csp
        refs = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        refs += re.findall(r"""url:\s*'([^']+)'""", page.text)  # the OpenAPI document Swagger UI loads
        assert len(refs) >= 4, refs
        assert not [r for r in refs if re.match(r"^(https?:)?//", r)], refs
        assert "cdn" not in page.text.lower() and "validator.swagger.io" not in page.text
        kinds = {}
        for ref in refs:
            url = urllib.parse.urljoin("http://testserver/docs", ref)
            reply = client.get(url)
            assert reply.status_code == 200, (ref, reply.status_code)
            kinds[ref] = reply.headers["content-type"].split(";")[0]
            assert len(reply.content) > 100, ref
        assert kinds == {"docs/assets/swagger-ui.css": "text/css", "docs/assets/favicon-32x32.png": "image/png",
                         "docs/assets/swagger-ui-bundle.js": "text/javascript", "openapi.json": "application/json"}
        assert b"SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").content
        assert client.get("/openapi.json").json()["info"]["title"] == "clipforge"
        # only Swagger UI's own files are served; the CDN-bound pages FastAPI would add are off
        assert client.get("/docs/assets/..%2f__init__.py").status_code == 404
        assert client.get("/docs/assets/index.html").status_code == 404
        assert client.get("/redoc").status_code == 404


def test_playground_first_screen_says_where_the_key_is_and_that_a_prompt_alone_works(tmp_path: Path):
    """A new user has set no CLIPFORGE_API_KEYS: the key dialog points at the key `make serve` printed."""
    from clipforge.api.app import create_app

    app = create_app(Settings(home=tmp_path, api_keys=("k1",)), store=MemoryJobStore())
    with TestClient(app, base_url="http://testserver") as client:
        page = client.get("/playground").text
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page))
    assert "Paste the key clipforge serve printed (kept in .clipforge/api-key)" in text
    assert "Write a prompt and press Generate; add an image to animate it instead." in page
    assert "add an image and press Generate" not in page
