"""The OpenAPI document describes what the app really does: bodies, auth, errors and media (no server needed)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from clipforge.api.aiml import CREATE_PATHS
from clipforge.api.app import create_app
from clipforge.api.openapi import aiml_operations, openai_operations, system_operations
from clipforge.core.routing import parse_routing
from clipforge.core.settings import Settings

ROUTING = parse_routing({"models": {"klingai/video-v2-6-pro-text-to-video": {"task": "t2v", "engines": ["preview"]},
                                    "sora-2": {"engines": ["preview"]}}, "engines": {}})


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    home = Path(tmp_path_factory.mktemp("doc"))
    return TestClient(create_app(Settings(home=home, api_keys=("k",)), routing=ROUTING))


@pytest.fixture(scope="module")
def doc(client: TestClient) -> dict:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


def operations(doc: dict) -> list[tuple[str, str, dict]]:
    return [(method, path, op) for path, item in doc["paths"].items() for method, op in item.items()]


def test_every_operation_is_described_by_the_table(doc: dict):
    table = {**aiml_operations(), **openai_operations(), **system_operations()}
    served = {(method, path) for method, path, _ in operations(doc)}
    assert served == set(table), (served - set(table), set(table) - served)


def test_no_422_and_errors_use_the_one_envelope(doc: dict):
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for method, path, op in operations(doc):
        assert "422" not in op["responses"], (method, path)
        for status, response in op["responses"].items():
            if status.startswith("4") and path != "/readyz":
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    error = doc["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"statusCode", "message", "path", "requestId", "timestamp", "error"}


def test_bearer_auth_everywhere_but_health_readiness_and_media(doc: dict):
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"}
    for method, path, op in operations(doc):
        public = path in ("/healthz", "/readyz", "/media/{key}")
        assert op["security"] == ([] if public else [{"bearerAuth": []}]), (method, path)
        if not public:
            assert "401" in op["responses"], (method, path)


def test_create_bodies_of_both_dialects(doc: dict):
    for path in CREATE_PATHS:
        content = doc["paths"][path]["post"]["requestBody"]["content"]
        assert content == {"application/json": {"schema": {"$ref": "#/components/schemas/GenerationCreate"}}}
        assert {"400", "401", "409", "413", "429", "503"} <= set(doc["paths"][path]["post"]["responses"])
    content = doc["paths"]["/v1/videos"]["post"]["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    schemas = doc["components"]["schemas"]
    aiml = schemas["GenerationCreate"]
    assert aiml["required"] == ["model", "prompt"]
    assert set(aiml["properties"]["model"]["enum"]) == {"klingai/video-v2-6-pro-text-to-video", "sora-2"}
    form = schemas["VideoCreateForm"]["properties"]
    assert form["input_reference"]["anyOf"][0]["format"] == "binary"
    assert form["seconds"]["anyOf"][0]["enum"] == ["4", "5", "8", "10", "12"]


def test_media_responses(doc: dict):
    content = doc["paths"]["/v1/videos/{video_id}/content"]["get"]["responses"]["200"]["content"]
    assert set(content) == {"video/mp4", "image/jpeg"}
    media = doc["paths"]["/media/{key}"]["get"]["responses"]
    assert set(media) == {"200", "307", "404"} and set(media["200"]["content"]) == {"video/mp4", "image/jpeg"}


def test_validation_errors_are_400_with_the_envelope(client: TestClient):
    r = client.get("/v1/videos", params={"limit": 0}, headers={"Authorization": "Bearer k"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "limit"
    assert set(r.json()) >= {"statusCode", "message", "path", "requestId", "timestamp", "error", "detail"}


def test_an_undescribed_route_still_gets_auth_and_errors(tmp_path: Path):
    app = create_app(Settings(home=tmp_path, api_keys=("k",)), routing=ROUTING)  # a second app in this process
    app.add_api_route("/v1/extra", lambda: {"ok": True}, methods=["GET"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. FastAPI's "Duplicate Operation ID": routes attached twice
        doc = TestClient(app).get("/openapi.json").json()
    op = doc["paths"]["/v1/extra"]["get"]
    assert op["security"] == [{"bearerAuth": []}] and {"200", "401", "429"} <= set(op["responses"])
