"""Bad input over real HTTP: each case is a 4xx naming the field; nothing is queued; the server stays up."""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest
from PIL import Image

from helpers import LiveServer, data_uri, gradient_image

I2V = "klingai/video-v2-6-pro-image-to-video"
T2V = "klingai/video-v2-6-pro-text-to-video"
GOOD = data_uri(gradient_image(400, 400))


def image_bytes(w: int, h: int, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (90, 120, 200)).save(buf, format=fmt)
    return buf.getvalue()


CASES = [
    ({"prompt": "x"}, 400, "model"),
    ({"model": "nope/model", "prompt": "x"}, 400, "model"),
    ({"model": 5, "prompt": "x"}, 400, "model"),
    ({"model": T2V}, 400, "prompt"),
    ({"model": T2V, "prompt": ""}, 400, "prompt"),
    ({"model": T2V, "prompt": "   "}, 400, "prompt"),
    ({"model": T2V, "prompt": "x" * 2501}, 400, "prompt"),
    ({"model": T2V, "prompt": ["x"]}, 400, "prompt"),
    ({"model": T2V, "prompt": "x", "duration": 7}, 400, "duration"),
    ({"model": T2V, "prompt": "x", "duration": "five"}, 400, "duration"),
    ({"model": T2V, "prompt": "x", "duration": True}, 400, "duration"),
    ({"model": T2V, "prompt": "x", "aspect_ratio": "4:3"}, 400, "aspect_ratio"),
    ({"model": T2V, "prompt": "x", "cfg_scale": 1.5}, 400, "cfg_scale"),
    ({"model": T2V, "prompt": "x", "cfg_scale": "high"}, 400, "cfg_scale"),
    ({"model": T2V, "prompt": "x", "generate_audio": "maybe"}, 400, "generate_audio"),
    ({"model": T2V, "prompt": "x", "seed": -1}, 400, "seed"),
    ({"model": T2V, "prompt": "x", "seed": 2**40}, 400, "seed"),
    ({"model": T2V, "prompt": "x", "negative_prompt": "n" * 2501}, 400, "negative_prompt"),
    ({"model": I2V, "prompt": "x"}, 400, "image_url"),
    ({"model": T2V, "prompt": "x", "image_url": GOOD}, 400, "image_url"),
    ({"model": I2V, "prompt": "x", "image_url": "ftp://example.com/a.png"}, 400, "image_url"),
    ({"model": I2V, "prompt": "x", "image_url": "file:///etc/passwd"}, 400, "image_url"),
    ({"model": I2V, "prompt": "x", "image_url": "not an image"}, 400, "image_url"),
    ({"model": I2V, "prompt": "x", "image_url": data_uri(image_bytes(200, 400))}, 400, "image_url"),
    ({"model": I2V, "prompt": "x", "image_url": data_uri(image_bytes(1200, 400))}, 400, "image_url"),
    ({"model": I2V, "prompt": "x", "image_url": data_uri(image_bytes(400, 400, "GIF"), "image/gif")}, 400,
     "image_url"),
    ({"model": I2V, "prompt": "x", "image_url": base64.b64encode(image_bytes(400, 400, "BMP")).decode()}, 400,
     "image_url"),
    ({"model": I2V, "prompt": "x", "image_url": data_uri(image_bytes(400, 400)[:200])}, 400, "image_url"),
    ({"model": I2V, "prompt": "x", "image_url": "http://127.0.0.1:1/a.png"}, 400, "image_url"),
    ({"model": I2V, "prompt": "x", "image_url": "http://169.254.169.254/latest/meta-data"}, 400, "image_url"),
    ({"model": I2V, "prompt": "x", "image_url": GOOD, "tail_image_url": data_uri(image_bytes(100, 100))}, 400,
     "tail_image_url"),
    ({"model": T2V, "prompt": "x", "tail_image_url": GOOD}, 400, "tail_image_url"),
    ({"model": I2V, "prompt": "x", "image_url": 42}, 400, "image_url"),
    ({"model": T2V, "prompt": 'a man says "hello\u0000 there"'}, 400, "prompt"),
    ({"model": T2V, "prompt": "bell \u0007 ringing"}, 400, "prompt"),
    ({"model": T2V, "prompt": "escape \u001b[31m red"}, 400, "prompt"),
    ({"model": T2V, "prompt": "x", "negative_prompt": "blur\u0000"}, 400, "negative_prompt"),
]


@pytest.mark.parametrize(("body", "status", "field"), CASES, ids=[f"{i}-{c[2]}" for i, c in enumerate(CASES)])
def test_bad_input_names_the_field(client: httpx.Client, body: dict, status: int, field: str):
    r = client.post("/v2/video/generations", json=body)
    assert r.status_code == status, r.text
    message = r.json()["message"]
    assert message.startswith(field + ":"), message
    assert r.json()["error"]["param"] == field


def test_malformed_bodies(client: httpx.Client):
    r = client.post("/v2/video/generations", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["message"].startswith("body:")
    r = client.post("/v2/video/generations", json=[1, 2])
    assert r.status_code == 400 and r.json()["message"].startswith("body:")
    r = client.post("/v2/video/generations", content=b"x" * (33 * 1024 * 1024))
    assert r.status_code == 413 and r.json()["message"].startswith("body:")


def test_poll_without_id_or_unknown_id(client: httpx.Client):
    r = client.get("/v2/video/generations/does-not-exist")
    assert r.status_code == 404


def test_nothing_was_queued_and_server_is_healthy(live_server: LiveServer, client: httpx.Client):
    from clipforge.api.auth import owner_id
    from clipforge.jobs.sqlite import SQLiteJobStore

    store = SQLiteJobStore(live_server.home / "clipforge.db")
    assert store.list(owner_id(live_server.keys[0])) == []
    assert list((live_server.home / "media").rglob("*.*")) == []
    assert httpx.get(f"{live_server.url}/healthz").status_code == 200
    assert httpx.get(f"{live_server.url}/readyz").status_code == 200


def test_control_characters_are_named(client: httpx.Client):
    r = client.post("/v2/video/generations", json={"model": T2V, "prompt": 'he says "-f/etc/passwd\u0000"'})
    assert r.status_code == 400 and "control characters" in r.json()["message"] and "U+0000" in r.json()["message"]
    r = client.post("/v1/videos", headers={"Idempotency-Key": "ctl"}, data={"prompt": "tab\tand\x08backspace"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/v1/models", "/v2/video/generations/x", "/nope"])
@pytest.mark.parametrize("value", [b"\xff\xfe\xb2", b"caf\xc3\xa9", b"a\x7fb"])
def test_bad_request_id_header_is_replaced(live_server: LiveServer, path: str, value: bytes):
    r = httpx.get(live_server.url + path, headers={**live_server.headers(0), "X-Request-Id": value})
    assert r.status_code < 500, r.text
    if "x-request-id" not in r.headers:  # httptools (uvicorn[standard]) refuses a DEL in a header itself
        assert value == b"a\x7fb" and r.status_code == 400
    else:
        assert r.headers["x-request-id"].isalnum() and len(r.headers["x-request-id"]) == 32  # a fresh one
    good = httpx.get(live_server.url + path, headers={**live_server.headers(0), "X-Request-Id": "req-1.2_3"})
    assert good.headers["x-request-id"] == "req-1.2_3"


@pytest.mark.parametrize("last_id", [b"\xb2", b"1" * 26, b"-1", b"abc", b"\xff\xfe", b"7.5"])
def test_bad_last_event_id_is_ignored(live_server: LiveServer, last_id: bytes):
    other = httpx.Client(base_url=live_server.url, headers=live_server.headers(1), timeout=30)
    gen_id = other.post("/v2/video/generations", json={"model": "test/fixed", "prompt": "sse"}).json()["id"]
    with other.stream("GET", f"/v2/video/generations/{gen_id}/events", headers={"Last-Event-ID": last_id}) as r:
        assert r.status_code == 200
        first = next(line for line in r.iter_lines() if line.startswith("data: "))
    assert '"status": "queued"' in first  # the stream started from the beginning
    other.delete(f"/v1/videos/{gen_id}")


# -- text that is not valid Unicode, absurd nesting and numbers, lists and objects for scalars ------------

def post_raw(client: httpx.Client, path: str, raw: str | bytes) -> httpx.Response:
    return client.post(path, content=raw.encode() if isinstance(raw, str) else raw,
                       headers={"Content-Type": "application/json"})


def assert_refused(r: httpx.Response, field: str, rule: str | None = None) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["message"].startswith(field + ":"), body["message"]
    assert body["error"]["param"] == field and body["statusCode"] == 400
    if rule is not None:
        assert body["error"]["code"] == rule, body


# JSON text as sent on the wire: `\ud800` is a lone surrogate escape that json.loads accepts.
SURROGATES = [
    ("/v2/video/generations", f'{{"model": "{T2V}", "prompt": "red \\ud800 sunset"}}', "prompt"),
    ("/v2/video/generations", f'{{"model": "{T2V}", "prompt": "x", "negative_prompt": "\\udfff"}}',
     "negative_prompt"),
    ("/v2/video/generations", '{"model": "klingai/\\ud83d", "prompt": "x"}', "model"),
    ("/v2/video/generations", f'{{"model": "{I2V}", "prompt": "x", "image_url": "https://a.example/\\ud800.png"}}',
     "image_url"),
    ("/v2/video/generations", f'{{"model": "{T2V}", "prompt": "x", "webhook_events": ["completed", "\\ud800"]}}',
     "webhook_events.1"),
    ("/v2/video/generations", f'{{"model": "{T2V}", "prompt": "x", "ignored": {{"deep": "\\ud800"}}}}',
     "ignored.deep"),
    ("/v2/video/generations", f'{{"model": "{T2V}", "prompt": "x", "\\ud800": 1}}', "body"),
    ("/v1/videos", '{"prompt": "red \\ud800 sunset"}', "prompt"),
    ("/v1/videos", '{"prompt": "x", "input_reference": {"image_url": "data:image/png;base64,\\ud800"}}',
     "input_reference.image_url"),
]


@pytest.mark.parametrize(("path", "raw", "field"), SURROGATES, ids=[f"{i}-{c[2]}" for i, c in enumerate(SURROGATES)])
def test_lone_surrogates_are_refused_naming_the_field(client: httpx.Client, path: str, raw: str, field: str):
    assert_refused(post_raw(client, path, raw), field, "unicode")


def test_surrogate_as_raw_bytes_and_in_remix(client: httpx.Client):
    # CESU-style bytes for U+D800 (json.loads decodes bytes with 'surrogatepass')
    raw = b'{"model": "' + T2V.encode() + b'", "prompt": "red \xed\xa0\x80 sunset"}'
    assert_refused(post_raw(client, "/v2/video/generations", raw), "prompt", "unicode")
    assert_refused(post_raw(client, "/v1/videos/any-id/remix", '{"prompt": "\\ud800"}'), "prompt", "unicode")


def test_listings_still_answer_after_surrogate_attempts(client: httpx.Client):
    post_raw(client, "/v2/video/generations", f'{{"model": "{T2V}", "prompt": "red \\ud800 sunset"}}')
    post_raw(client, "/v1/videos", '{"prompt": "red \\ud800 sunset", "model": "test/fixed"}')
    assert client.get("/v2/video/generations").status_code == 200
    assert client.get("/v1/videos").status_code == 200


@pytest.mark.parametrize("path", ["/v2/video/generations", "/v1/videos", "/v1/videos/any-id/remix"])
@pytest.mark.parametrize("depth", [17, 1000, 100_000])
def test_deeply_nested_json_is_a_clean_400(client: httpx.Client, path: str, depth: int):
    raw = f'{{"model": "{T2V}", "prompt": "x", "extra": ' + "[" * depth + "]" * depth + "}"
    assert_refused(post_raw(client, path, raw), "body", "json_depth")


def test_nesting_within_the_limit_is_fine(client: httpx.Client):
    raw = f'{{"model": "{T2V}", "prompt": "x", "extra": ' + "[" * 15 + "]" * 15 + ', "aspect_ratio": "4:3"}'
    assert_refused(post_raw(client, "/v2/video/generations", raw), "aspect_ratio")  # parsed; the next rule spoke


@pytest.mark.parametrize("path", ["/v2/video/generations", "/v1/videos", "/v1/videos/any-id/remix"])
@pytest.mark.parametrize("where", ["seed", "ignored"])
def test_huge_integer_literals_are_a_clean_400(client: httpx.Client, path: str, where: str):
    raw = f'{{"model": "{T2V}", "prompt": "x", "{where}": 1{"0" * 5000}}}'
    assert_refused(post_raw(client, path, raw), "body", "json_number")


def test_long_but_legal_integer_is_judged_by_its_field(client: httpx.Client):
    r = post_raw(client, "/v2/video/generations", f'{{"model": "{T2V}", "prompt": "x", "seed": 1{"0" * 4000}}}')
    assert_refused(r, "seed", "range")



@pytest.mark.parametrize("field", ["duration", "cfg_scale"])
@pytest.mark.parametrize("digits", [400, 4000])
def test_an_integer_too_big_for_a_float_is_judged_by_its_field(client: httpx.Client, field: str, digits: int):
    """float() of such an int raises OverflowError, not ValueError: it was a 500."""
    r = post_raw(client, "/v2/video/generations", f'{{"model": "{T2V}", "prompt": "x", "{field}": 1{"0" * digits}}}')
    assert_refused(r, field)


@pytest.mark.parametrize("path", ["/v2/video/generations", "/v1/videos"])
def test_a_body_of_countless_values_is_refused_before_parsing(client: httpx.Client, path: str):
    """32 MB of tiny values held the event loop for over 10 s (every other request waited)."""
    filler = ",".join(f'"k{i}": 0' for i in range(60_000))
    r = post_raw(client, path, f'{{"model": "{T2V}", "prompt": "x", {filler}}}')
    assert_refused(r, "body", "json_values")


def test_commas_in_long_prompts_are_fine(client: httpx.Client):
    r = post_raw(client, "/v2/video/generations", json.dumps({"model": "no-such-model", "prompt": "," * 2500,
                                                              "negative_prompt": "," * 2500, "note": "," * 20_000}))
    assert_refused(r, "model")  # parsed; the next rule spoke

AIML_SCALARS = ["model", "prompt", "image_url", "tail_image_url", "last_image_url", "duration", "aspect_ratio",
                "negative_prompt", "cfg_scale", "generate_audio", "seed", "provider", "webhook_url"]
OPENAI_SCALARS = ["model", "prompt", "seconds", "size", "negative_prompt", "generate_audio", "seed", "webhook_url"]
SHAPES = {"list": ["16:9"], "object": {"value": "16:9"}, "empty-list": [], "empty-object": {}}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("field", AIML_SCALARS)
def test_aiml_scalar_given_a_list_or_object(client: httpx.Client, field: str, shape: str):
    body = {"model": I2V, "prompt": "x", "image_url": GOOD, field: SHAPES[shape]}
    assert_refused(client.post("/v2/video/generations", json=body), field)


@pytest.mark.parametrize("value", [["x"], {"url": "x"}, "", 5])
def test_an_image_alias_is_checked_even_when_the_other_is_given(client: httpx.Client, value: object):
    body = {"model": I2V, "prompt": "x", "image_url": GOOD, "tail_image_url": GOOD, "last_image_url": value}
    assert_refused(client.post("/v2/video/generations", json=body), "last_image_url", "type")


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("field", OPENAI_SCALARS)
def test_openai_scalar_given_a_list_or_object(client: httpx.Client, field: str, shape: str):
    body = {"model": "test/fixed", "prompt": "x", field: SHAPES[shape]}
    assert_refused(client.post("/v1/videos", json=body), field)


@pytest.mark.parametrize("value", [["https://a.example/a.png"], {"image_url": ["x"]}, 5, True])
def test_openai_input_reference_of_the_wrong_shape(client: httpx.Client, value: object):
    r = client.post("/v1/videos", json={"model": "test/fixed", "prompt": "x", "input_reference": value})
    assert_refused(r, "input_reference")


def test_an_empty_idempotency_key_is_no_key(client: httpx.Client):
    # it was stored as the key "" and the second create hit the store's unique index (a 500)
    body = {"model": T2V, "prompt": "x", "aspect_ratio": "1:1"}
    ids = []
    for _ in range(2):
        r = client.post("/v2/video/generations", json=body, headers={"Idempotency-Key": ""})
        assert r.status_code == 200, r.text
        ids.append(r.json()["id"])
    assert ids[0] != ids[1]
    for job_id in ids:
        client.delete(f"/v2/video/generations/{job_id}")
