"""The OpenAPI document: what FastAPI cannot infer from handlers that parse their own bodies.

Handlers read `Request` bodies themselves (both dialects accept several encodings, and every refusal
must name its field in the one error envelope), so FastAPI alone would describe no request bodies, no
auth and a 422 that the app never sends. `install_openapi` builds FastAPI's document once and then
describes, per operation (keyed by method and path):

- request bodies: the AIML create body (JSON) on its four paths; `POST /v1/videos` as the OpenAI
  multipart form (what the SDK sends) and as JSON; the remix body;
- the bearer scheme (`Authorization: Bearer <key>`) on every operation except health, readiness and
  media, which are public;
- every status the app can answer, with the one error envelope (400, never 422) and the media types
  of downloads (MP4 video, JPEG thumbnail and spritesheet, a 307 to object storage).

The model ids a server routes are listed as the `model` enum, so the document is true for that
server. `tests/api/test_openapi_fuzz.py` runs schemathesis over the whole document.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from clipforge.api.aiml import CREATE_PATHS, LIST_STATUS
from clipforge.api.params import MAX_SEED
from clipforge.api.submit import IDEMPOTENCY_KEY_MAX
from clipforge.core.spec import ASPECT_RATIOS, DURATIONS, MAX_PROMPT_CHARS, OPENAI_DURATIONS
from clipforge.jobs.webhooks import EVENTS

Schema = dict[str, Any]

BEARER = "bearerAuth"
PUBLIC = {"/healthz", "/readyz", "/media/{key}"}


def optional(schema: Schema) -> Schema:
    """The schema, or null (a JSON body's null means "not given": the default applies)."""
    out = dict(schema)
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    if "anyOf" in out:
        out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    elif "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def nulls_allowed(body: Schema) -> Schema:
    """A JSON request body whose optional fields may also be null."""
    required = set(body["required"])
    return {**body, "properties": {k: v if k in required else optional(v) for k, v in body["properties"].items()}}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: dict[str, Schema], required: Iterable[str] = (), **extra: Any) -> Schema:
    return {"type": "object", "properties": properties, "required": list(required), **extra}


STR, INT, BOOL, NUM = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}, {"type": "number"}
BINARY = {"type": "string", "format": "binary"}
USAGE = obj({"usage": obj({"credits_used": INT, "duration_seconds": nullable(INT), "input_tokens": INT,
                           "output_tokens": INT, "total_tokens": INT})}, ["usage"])
IMAGE_REF = {"type": "string", "minLength": 1, "description": "An http(s) URL, a data:image/...;base64 URI or "
             "bare base64; JPEG, PNG or WEBP, at most 10 MB, each side >= 300 px, aspect 1:2.5..2.5:1.",
             "examples": ["https://example.com/first-frame.jpg"]}
WEBHOOK_URL = {"type": "string", "minLength": 1, "maxLength": 2048,
               "description": "An http(s) URL on a public address; signed deliveries go there (see "
               "/v1/webhooks/secret).",
               "examples": ["https://example.com/hooks/clipforge"]}
WEBHOOK_EVENTS = {"anyOf": [{"type": "array", "minItems": 1, "items": {"enum": list(EVENTS)}},
                            {"type": "string", "description": "comma-separated events"}],
                  "examples": [["completed", "failed"]],
                  "description": f"Which events to deliver, from {', '.join(EVENTS)}; default completed, failed."}
PROMPT = {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS,
          "description": "What the clip shows and sounds like; not blank."}
NEGATIVE = {"type": "string", "maxLength": MAX_PROMPT_CHARS}
SEED = {"type": "integer", "minimum": 0, "maximum": MAX_SEED,
        "description": "Same seed, inputs and engine: same clip. Omitted: random (the one used is reported)."}


def model_enum(models: list[str]) -> Schema:
    return {"enum": models} if models else {}


def component_schemas(models: list[str]) -> dict[str, Schema]:
    """Every named schema: the error envelope, request bodies and response objects of both dialects."""
    return {**error_schemas(), **aiml_schemas(models), **openai_schemas(models), **system_schemas()}


def error_schemas() -> dict[str, Schema]:
    detail = {"type": "array", "items": obj({"loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                                             "msg": STR, "type": STR}, ["loc", "msg", "type"])}
    error = obj({"message": STR, "type": STR, "param": nullable(STR), "code": nullable(STR)},
                ["message", "type", "param", "code"])
    return {"Error": obj({
        "statusCode": INT, "message": {"type": "string", "description": "Starts with the field it is about, "
                                       "e.g. 'duration: must be one of (5, 10) seconds, got 7'."},
        "path": STR, "requestId": nullable(STR), "timestamp": STR, "error": error, "detail": detail,
    }, ["statusCode", "message", "path", "requestId", "timestamp", "error"],
        description="The one error envelope of both dialects (AIML fields plus an OpenAI-style `error`).")}


def aiml_schemas(models: list[str]) -> dict[str, Schema]:
    view = obj({
        "id": STR, "object": {"const": "video.generation"}, "model": STR, "created": INT,
        "status": {"enum": ["queued", "generating", "completed", "error"]},
        "progress": {"type": "integer", "minimum": 0, "maximum": 100}, "stage": nullable(STR),
        "queue_position": nullable(INT), "eta_seconds": nullable(NUM),
        "video": nullable(obj({"url": nullable(STR), "content_type": STR, "file_name": STR,
                               "file_size": nullable(INT)}, ["url"])),
        "output": nullable(obj({"video_url": nullable(STR), "thumbnail_url": nullable(STR),
                                "duration_seconds": nullable(INT), "has_audio": nullable(BOOL),
                                "width": nullable(INT), "height": nullable(INT)}, ["video_url"])),
        "error": nullable(obj({"name": STR, "code": STR, "message": STR}, ["message"],
                              description="Why it failed: `name` (e.g. QueueTimeout, WorkerLost, EngineError), "
                              "a `code` where one is set (e.g. queue_timeout), and a message.")),
        "prompt": nullable(STR), "seed": nullable(INT), "expires_at": nullable(INT), "meta": USAGE,
        "cancel_requested": BOOL,
    }, ["id", "object", "model", "created", "status", "progress", "video", "output", "error", "meta"])
    return {
        "GenerationCreate": nulls_allowed(obj({
            "model": {"type": "string", **model_enum(models), "description": "A model id from GET /v1/models."},
            "prompt": PROMPT,
            "image_url": {**IMAGE_REF, "description": "The first frame; required by image-to-video models. "
                          + IMAGE_REF["description"]},
            "tail_image_url": {**IMAGE_REF, "description": "The last frame (needs image_url). "
                               + IMAGE_REF["description"]},
            "last_image_url": {**IMAGE_REF, "description": "Alias of tail_image_url (which wins when both are "
                               "given)."},
            "duration": {"enum": [*DURATIONS, *(str(d) for d in DURATIONS)], "default": DURATIONS[0],
                         "description": "Seconds, as a number or a numeric string."},
            "aspect_ratio": {"enum": list(ASPECT_RATIOS), "description": "t2v: default 16:9; i2v: the image's."},
            "negative_prompt": NEGATIVE,
            "cfg_scale": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
            "generate_audio": {"type": "boolean", "default": True},
            "seed": SEED,
            "provider": {"type": "string", "maxLength": 200, "description": "Accepted for compatibility; unused."},
            "webhook_url": WEBHOOK_URL, "webhook_events": WEBHOOK_EVENTS,
        }, ["model", "prompt"], description="Unknown fields are ignored; null is the same as not given.")),
        "GenerationCreated": obj({"id": STR, "object": {"const": "video.generation"}, "status": STR, "model": STR,
                                  "created": INT, "meta": USAGE}, ["id", "status", "model", "created"]),
        "Generation": view,
        "GenerationList": obj({"object": {"const": "list"}, "data": {"type": "array", "items": ref("Generation")},
                               "has_more": BOOL, "next_cursor": nullable(STR)}, ["object", "data", "has_more"]),
    }


def or_empty(schema: Schema) -> Schema:
    """The schema, or "" (the OpenAI dialect reads an empty seconds, size or input_reference as not given)."""
    notes = ("description", "examples", "default")
    return {"anyOf": [{k: v for k, v in schema.items() if k not in notes}, {"const": ""}],
            **{k: v for k, v in schema.items() if k in notes}}


def openai_create(models: list[str], image: Schema) -> Schema:
    return obj({
        "prompt": PROMPT,
        "model": {"type": "string", **model_enum(models), "default": "sora-2",
                  "description": "A model id from GET /v1/models; omitted: sora-2."},
        "seconds": or_empty({"enum": [str(d) for d in OPENAI_DURATIONS], "default": str(DURATIONS[0]),
                             "description": "The clip's length; rendered exactly."}),
        "size": or_empty({"type": "string", "pattern": "^[0-9]{1,5}x[0-9]{1,5}$", "examples": ["1280x720"],
                          "description": "WIDTHxHEIGHT, even sides of 256..1920 px, aspect 1:2.5..2.5:1. "
                          "Omitted: the input image's size (long side <= 1920), else 1920x1080."}),
        "input_reference": or_empty(image), "negative_prompt": NEGATIVE, "generate_audio": BOOL, "seed": SEED,
        "webhook_url": WEBHOOK_URL, "webhook_events": WEBHOOK_EVENTS,
    }, ["prompt"])


def openai_schemas(models: list[str]) -> dict[str, Schema]:
    json_image = {"anyOf": [IMAGE_REF, obj({"image_url": IMAGE_REF}, ["image_url"])],
                  "examples": IMAGE_REF["examples"],
                  "description": "The first frame: a URL or data URI, or {\"image_url\": ...}."}
    form_image = {**BINARY, "contentMediaType": "image/*",
                  "description": "The first frame, an uploaded JPEG, PNG or WEBP file."}
    video = obj({
        "id": STR, "object": {"const": "video"}, "model": STR,
        "status": {"enum": ["queued", "in_progress", "completed", "failed"]},
        "progress": {"type": "integer", "minimum": 0, "maximum": 100}, "created_at": INT,
        "completed_at": nullable(INT), "expires_at": nullable(INT), "prompt": nullable(STR), "seconds": STR,
        "size": nullable(STR), "remixed_from_video_id": nullable(STR),
        "error": nullable(obj({"code": STR, "message": STR}, ["code", "message"])),
    }, ["id", "object", "model", "status", "progress", "created_at", "seconds", "error"])
    return {
        "VideoCreate": nulls_allowed(openai_create(models, json_image)),
        "VideoCreateForm": openai_create(models, form_image),
        "VideoRemix": obj({"prompt": PROMPT}, ["prompt"]),
        "Video": video,
        "VideoList": obj({"object": {"const": "list"}, "data": {"type": "array", "items": ref("Video")},
                          "first_id": nullable(STR), "last_id": nullable(STR), "has_more": BOOL},
                         ["object", "data", "has_more"]),
        "VideoDeleted": obj({"id": STR, "object": {"const": "video.deleted"}, "deleted": {"const": True}},
                            ["id", "object", "deleted"]),
    }


def system_schemas() -> dict[str, Schema]:
    engine = obj({"name": STR, "ready": BOOL, "workers": INT, "reason": nullable(STR)}, ["name", "ready"])
    model = obj({"id": STR, "object": {"const": "model"}, "created": INT, "owned_by": STR, "type": STR,
                 "task": {"enum": ["i2v", "t2v", "any"]}, "ready": BOOL, "engine": nullable(STR),
                 "engines": {"type": "array", "items": engine}}, ["id", "object", "ready"])
    return {
        "ModelList": obj({"object": {"const": "list"}, "data": {"type": "array", "items": model}}, ["object", "data"]),
        "Health": obj({"status": {"const": "ok"}}, ["status"]),
        "Ready": obj({"status": {"enum": ["ready", "not ready"]}, "models": {"type": "array", "items": STR},
                      "reason": STR}, ["status"]),
        "WebhookSecret": obj({"object": {"const": "webhook.secret"}, "secret": STR, "rotated": BOOL},
                             ["object", "secret"]),
    }


# -- responses ------------------------------------------------------------------------------------
ERROR_TEXT = {400: "Invalid request: the message and `error.param` name the field and the rule.",
              401: "Missing or unknown API key.", 404: "No such generation for this key, or no such route.",
              409: "Conflict: an Idempotency-Key reused with another "
              "body, or a cancel of a finished generation.", 413: "Body larger than 32 MB.",
              429: "Rate limit or active-job quota; see Retry-After.",
              503: "No ready engine for this model (or the server is starting); see Retry-After."}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}}


def json_response(description: str, schema: Schema, headers: dict[str, Any] | None = None) -> Schema:
    out: Schema = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def errors(*codes: int) -> dict[str, Schema]:
    return {str(code): json_response(ERROR_TEXT[code], ref("Error"), RETRY_AFTER if code in (429, 503) else None)
            for code in codes}


def media(description: str, types: Iterable[str]) -> Schema:
    return {"description": description, "content": {t: {"schema": BINARY} for t in types}}


AUTHED_READ = (400, 401, 404, 429)
CREATE = (400, 401, 409, 413, 429, 503)
POLL_HEADERS = {"Retry-After": {"description": "While in flight: seconds until the next poll is worth it",
                                "schema": {"type": "string"}}}
OPENAI_POLL = {"openai-poll-after-ms": {"description": "While in flight: milliseconds until the next poll",
                                        "schema": {"type": "string"}}}
IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False,
               "schema": {"type": "string", "maxLength": IDEMPOTENCY_KEY_MAX, "pattern": "^[ -~]*$"},
               "description": "A retry with the same key and body gets the first answer instead of a second job. "
               f"At most {IDEMPOTENCY_KEY_MAX} printable ASCII characters (else 400); empty means no key."}


def body(content: dict[str, str]) -> Schema:
    return {"required": True, "content": {media_type: {"schema": ref(name)} for media_type, name in content.items()}}


Operation = dict[str, Any]


def links(param: str, targets: dict[str, tuple[str, str]]) -> dict[str, Schema]:
    """OpenAPI links from a create's answer to the operations that take its id (stateful clients follow them)."""
    return {name: {"operationRef": "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method,
                   "parameters": {param: "$response.body#/id"}} for name, (method, path) in targets.items()}


AIML_LINKS = links("generation_id", {"poll": ("get", "/v2/video/generations/{generation_id}"),
                                     "cancel": ("post", "/v2/video/generations/{generation_id}/cancel")})
OPENAI_LINKS = links("video_id", {"retrieve": ("get", "/v1/videos/{video_id}"),
                                  "content": ("get", "/v1/videos/{video_id}/content"),
                                  "remix": ("post", "/v1/videos/{video_id}/remix"),
                                  "delete": ("delete", "/v1/videos/{video_id}")})


def aiml_operations(create_paths: Iterable[str] = CREATE_PATHS) -> dict[tuple[str, str], Operation]:
    generation = json_response("The generation", ref("Generation"), POLL_HEADERS)
    created = {**json_response("Queued", ref("GenerationCreated")), "links": AIML_LINKS}
    ops: dict[tuple[str, str], Operation] = {}
    for path in create_paths:
        ops["post", path] = {"requestBody": body({"application/json": "GenerationCreate"}),
                             "parameters+": [IDEMPOTENCY], "responses": {"200": created, **errors(*CREATE)}}
        ops["get", path] = {"responses": {
            "200": json_response("One generation (with generation_id) or a page of the caller's generations",
                                 {"anyOf": [ref("Generation"), ref("GenerationList")]}, POLL_HEADERS),
            **errors(*AUTHED_READ)}, "enum": {"status": list(LIST_STATUS)}}
    base = "/v2/video/generations/{generation_id}"
    ops["get", base] = {"responses": {"200": generation, **errors(*AUTHED_READ)}}
    for method, path in (("post", base + "/cancel"), ("delete", base)):
        ops[method, path] = {"responses": {"200": json_response("Cancelled (or cancelling)", ref("Generation")),
                                           **errors(*AUTHED_READ, 409)}}
    ops["get", base + "/events"] = {"responses": {
        "200": {"description": "Server-sent events: `progress` events, then one `done` event with the generation",
                "content": {"text/event-stream": {"schema": STR}}}, **errors(*AUTHED_READ)}}
    return ops


def openai_operations() -> dict[tuple[str, str], Operation]:
    video = json_response("The video", ref("Video"), OPENAI_POLL)
    base = "/v1/videos/{video_id}"
    return {
        ("post", "/v1/videos"): {
            "requestBody": body({"multipart/form-data": "VideoCreateForm", "application/json": "VideoCreate"}),
            "parameters+": [IDEMPOTENCY], "responses": {"200": {**video, "links": OPENAI_LINKS}, **errors(*CREATE)}},
        ("get", "/v1/videos"): {"responses": {"200": json_response("A page of videos", ref("VideoList")),
                                              **errors(*AUTHED_READ)}},
        ("get", base): {"responses": {"200": video, **errors(*AUTHED_READ)}},
        ("delete", base): {"responses": {"200": json_response("Deleted", ref("VideoDeleted")),
                                         **errors(*AUTHED_READ)}},
        ("get", base + "/content"): {
            "responses": {"200": media("The MP4 (variant=video) or a JPEG (thumbnail, spritesheet)",
                                       ("video/mp4", "image/jpeg")), **errors(*AUTHED_READ)},
            "enum": {"variant": ["video", "thumbnail", "spritesheet"]}},
        ("post", base + "/remix"): {"requestBody": body({"application/json": "VideoRemix"}),
                                    "parameters+": [IDEMPOTENCY],
                                    "responses": {"200": video, **errors(*AUTHED_READ, 409, 413, 503)}},
    }


def system_operations() -> dict[tuple[str, str], Operation]:
    models = {"responses": {"200": json_response("Models and what serves them", ref("ModelList")),
                            **errors(401, 429)}}
    secret = {"responses": {"200": json_response("The signing secret", ref("WebhookSecret")), **errors(401, 429)}}
    return {
        ("get", "/healthz"): {"responses": {"200": json_response("Up", ref("Health"))}},
        ("get", "/readyz"): {"responses": {"200": json_response("Ready", ref("Ready")),
                                           "503": json_response("Not ready, and why", ref("Ready"), RETRY_AFTER)}},
        ("get", "/v1/models"): models, ("get", "/models"): models,
        ("get", "/media/{key}"): {
            "responses": {"200": media("An output file", ("video/mp4", "image/jpeg")),
                          "307": {"description": "A short-lived signed URL in object storage",
                                  "headers": {"Location": {"schema": STR}}},
                          **errors(404)},
            "pattern": {"key": r"^[A-Za-z0-9_-]{1,64}/(output\.mp4|thumbnail\.jpg|spritesheet\.jpg)$"}},
        ("get", "/v1/webhooks/secret"): secret, ("post", "/v1/webhooks/secret/rotate"): secret,
    }


# -- assembling -------------------------------------------------------------------------------------
def describe(doc: Schema, models: list[str]) -> Schema:
    """FastAPI's document with bodies, auth, real errors and media responses filled in."""
    table = {**aiml_operations(), **openai_operations(), **system_operations()}
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            # A route not in the table keeps FastAPI's 200 and gets the errors every authed route can give.
            described = table.get((method, path)) or {"responses": errors(*AUTHED_READ), "generic": True}
            _apply(op, described, public=path in PUBLIC)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas.update(component_schemas(models))
    components["securitySchemes"] = {BEARER: {"type": "http", "scheme": "bearer",
                                              "description": "Authorization: Bearer <API key>"}}
    doc["security"] = [{BEARER: []}]
    return doc


def _apply(op: Operation, described: Operation, public: bool) -> None:
    kept = ("200",) if described.get("generic") else ()
    op["responses"] = {**{k: v for k, v in op.get("responses", {}).items() if k in kept},
                       **described["responses"]}
    params = op.setdefault("parameters", [])
    for param in params:
        schema = param.get("schema", {})
        if param["in"] == "path":
            schema["minLength"] = 1
        for key in ("enum", "pattern"):
            if param["name"] in described.get(key, {}):
                schema.pop("anyOf", None)
                schema.update({"type": "string", key: described[key][param["name"]]})
    params.extend(described.get("parameters+", []))
    if not params:
        op.pop("parameters")
    if "requestBody" in described:
        op["requestBody"] = described["requestBody"]
    op["security"] = [] if public else [{BEARER: []}]


def install_openapi(app: FastAPI, models: Callable[[], list[str]]) -> None:
    """Serve the described document at /openapi.json (built on first request, then cached); `models` gives
    the routed model ids."""

    def build() -> Schema:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            app.openapi_schema = describe(doc, models())
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]
