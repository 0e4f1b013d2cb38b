"""The playground end to end in a real headless Chromium against a real `clipforge serve`."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import httpx
import pytest

from helpers import LiveServer, data_uri, gradient_image, wait_terminal

PREVIEW_I2V = "klingai/video-v2-6-pro-image-to-video"


@pytest.fixture(scope="module")
def model(live_server: LiveServer) -> str:
    """The seed's i2v model when its preview engine is ready on this host, else the fast test engine."""
    models = httpx.get(live_server.url + "/v1/models", headers=live_server.headers()).json()["data"]
    ready = {m["id"] for m in models if m["ready"]}
    return PREVIEW_I2V if PREVIEW_I2V in ready else "test/fixed"


@pytest.fixture
def page(browser, live_server: LiveServer):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.console_errors = errors
    yield page
    context.close()


def sign_in(page, server: LiveServer, shot: Path | None = None) -> None:
    """Open the page and enter the key in its dialog, as a new user would."""
    page.goto(server.url + "/")
    assert page.url == server.url + "/playground"
    page.locator("#key-dialog").wait_for(state="visible")
    page.fill("#key-input", "wrong-key")
    page.click("#key-save")
    page.wait_for_function("() => document.querySelector('#key-error').textContent.includes('invalid API key')")
    if shot:
        page.screenshot(path=str(shot))
    page.fill("#key-input", server.keys[0])
    page.click("#key-save")
    page.locator("#key-dialog").wait_for(state="hidden")
    page.wait_for_function("() => document.querySelectorAll('#model option').length > 0")


def choose_image(page, tmp_path: Path, name: str, png: bytes, selector: str = "#image-file") -> Path:
    path = tmp_path / name
    path.write_bytes(png)
    page.set_input_files(selector, str(path))
    page.locator("#image-field .drop.has-image").wait_for()
    return path


def test_page_is_public_and_self_contained(live_server: LiveServer):
    r = httpx.get(live_server.url + "/", follow_redirects=False)
    assert r.status_code in (302, 307) and r.headers["location"].endswith("playground")
    r = httpx.get(live_server.url + "/playground")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "connect-src 'self'" in csp and "default-src 'none'" in csp
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    assert r.text.count(f'nonce="{nonce}"') == 2
    # Nothing is loaded from elsewhere: no external scripts, styles, fonts or images.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", r.text)
    assert "@import" not in r.text and "url(http" not in r.text


def test_upload_generate_play_and_gallery(page, live_server: LiveServer, model: str, tmp_path: Path,
                                          artifacts: Path):
    requests_seen: list[str] = []
    page.on("request", lambda req: requests_seen.append(req.url))
    sign_in(page, live_server, shot=artifacts / "00-key-dialog.png")
    assert page.evaluate("localStorage.getItem('clipforge.key')") == f'"{live_server.keys[0]}"'
    page.select_option("#model", model)
    assert "Ready" in page.inner_text("#model-hint")
    choose_image(page, tmp_path, "scene.png", gradient_image(480, 320, seed=3))
    assert "480×320 px" in page.inner_text("#image-field .dims")
    page.fill("#prompt", "A colourful scene slowly comes alive")
    page.screenshot(path=str(artifacts / "01-form.png"), full_page=True)

    progress_seen: list[int] = []
    page.expose_function("reportProgress", lambda pct: progress_seen.append(int(pct)))
    page.evaluate("""() => new MutationObserver(() => window.reportProgress(
        parseInt(document.querySelector('#progress-pct').textContent)))
        .observe(document.querySelector('#progress-pct'), {childList: true, characterData: true, subtree: true})""")
    page.click("#submit")
    page.locator("#status-pill").wait_for()
    gen_id = page.evaluate("JSON.parse(localStorage.getItem('clipforge.ids'))[0]")
    page.wait_for_function("() => document.querySelector('#status-pill').textContent === 'completed'", timeout=240_000)
    assert page.inner_text("#progress-pct") == "100%"
    assert progress_seen and progress_seen[-1] == 100

    # The <video> loads the finished clip: 5 s, and it plays with sound.
    page.wait_for_function("() => document.querySelector('#video').readyState >= 1")
    duration = page.evaluate("document.querySelector('#video').duration")
    assert abs(duration - 5.0) < 0.1, duration
    page.evaluate("document.querySelector('#video').play()")
    page.wait_for_function("() => document.querySelector('#video').currentTime > 0.3", timeout=20_000)
    page.evaluate("document.querySelector('#video').pause()")
    assert page.evaluate("document.querySelector('#video').webkitAudioDecodedByteCount") > 0
    width, height = page.evaluate("(v => [v.videoWidth, v.videoHeight])(document.querySelector('#video'))")
    assert abs(width / height - 1.5) < 0.02, (width, height)  # i2v keeps the 480x320 image's aspect
    assert page.get_attribute("#download", "href") == page.evaluate("document.querySelector('#video').src")
    assert "5 s" in page.inner_text("#gen-meta") and "with audio" in page.inner_text("#gen-meta")
    page.screenshot(path=str(artifacts / "02-completed.png"), full_page=True)

    # The gallery lists the result after a reload, with its thumbnail; the key is not asked again.
    page.reload()
    tile = page.locator(f'.tile[data-id="{gen_id}"]')
    tile.wait_for()
    assert not page.locator("#key-dialog").is_visible()
    page.wait_for_function("""id => { const img = document.querySelector(`.tile[data-id="${id}"] img`);
        return img && img.complete && img.naturalWidth > 0; }""", arg=gen_id)
    assert "A colourful scene" in tile.inner_text()
    tile.click()
    page.wait_for_function("() => document.querySelector('#video').readyState >= 1")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(artifacts / "03-gallery-after-reload.png"), full_page=True)

    # Everything the page loaded came from this server (no CDN, no fonts, nothing external).
    outside = [u for u in requests_seen if not u.startswith((live_server.url, "data:", "blob:"))]
    assert not outside, outside
    assert not page.console_errors, page.console_errors


def test_too_small_image_shows_the_api_message_next_to_the_image(page, live_server: LiveServer, model: str,
                                                                 tmp_path: Path, artifacts: Path):
    small = gradient_image(200, 180)
    expected = httpx.post(live_server.url + "/v2/video/generations", headers=live_server.headers(),
                          json={"model": model, "prompt": "too small", "image_url": data_uri(small)}).json()
    assert expected["error"]["param"] == "image_url"
    sign_in(page, live_server)
    page.select_option("#model", model)
    choose_image(page, tmp_path, "tiny.png", small)
    page.fill("#prompt", "too small")
    page.click("#submit")
    slot = page.locator('[data-error-for="image_url"]')
    page.wait_for_function("() => document.querySelector('[data-error-for=image_url]').textContent.length > 0")
    assert slot.inner_text() == expected["message"]
    assert "200x180" in slot.inner_text()
    assert page.locator("#image-field.invalid").count() == 1
    assert page.locator("#form-error").is_hidden()
    # The message sits inside the image field, right under the drop zone.
    drop, msg = page.locator("#image-drop").bounding_box(), slot.bounding_box()
    assert 0 <= msg["y"] - (drop["y"] + drop["height"]) < 40
    page.screenshot(path=str(artifacts / "04-image-too-small.png"), full_page=True)
    # A fixed input clears the message.
    choose_image(page, tmp_path, "ok.png", gradient_image(480, 320))
    assert slot.inner_text() == ""


def test_other_field_errors_land_on_their_field(page, live_server: LiveServer, model: str, tmp_path: Path):
    sign_in(page, live_server)
    page.select_option("#model", model)
    page.click("#submit")  # no prompt
    page.wait_for_function("() => document.querySelector('[data-error-for=prompt]').textContent.startsWith('prompt')")
    page.fill("#prompt", "seed check")
    page.click("#advanced summary")
    page.fill("#seed", "-5")
    page.click("#submit")
    page.wait_for_function("() => document.querySelector('[data-error-for=seed]').textContent.startsWith('seed')")
    assert page.inner_text('[data-error-for="prompt"]') == ""

    # A last frame dropped (drag and drop) without a first image: the API names tail_image_url.
    page.fill("#seed", "")
    png = base64.b64encode(gradient_image(320, 320)).decode()
    transfer = page.evaluate_handle("""b64 => { const dt = new DataTransfer();
        const bin = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        dt.items.add(new File([bin], 'dropped.png', {type: 'image/png'})); return dt; }""", png)
    page.dispatch_event("#tail-drop", "drop", {"dataTransfer": transfer})
    page.locator("#tail-field .drop.has-image").wait_for()
    assert "dropped.png" in page.inner_text("#tail-field .name")
    page.click("#submit")
    page.wait_for_function(
        "() => document.querySelector('[data-error-for=tail_image_url]').textContent.includes('image_url')")
    assert page.inner_text('[data-error-for="image_url"]') == ""


def test_cancel_a_running_generation(page, live_server: LiveServer, artifacts: Path):
    sign_in(page, live_server)
    page.select_option("#model", "test/slow")
    page.fill("#prompt", "long one")
    page.click('#aspect button[data-value="1:1"]')
    page.click("#submit")
    page.wait_for_function("() => document.querySelector('#status-pill').textContent === 'generating'", timeout=60_000)
    page.wait_for_function("() => parseInt(document.querySelector('#progress-pct').textContent) > 0")
    page.click("#cancel")
    page.wait_for_function("() => document.querySelector('#status-pill').textContent === 'cancelled'", timeout=30_000)
    assert "Cancel" in page.inner_text("#gen-error")
    assert page.locator("#cancel").is_hidden()
    page.screenshot(path=str(artifacts / "05-cancelled.png"), full_page=True)


def test_code_panel_runs_as_shown(page, live_server: LiveServer, model: str, tmp_path: Path):
    """The curl and Python the page shows, with the key filled in, create a generation on this server."""
    sign_in(page, live_server)
    page.select_option("#model", model)
    choose_image(page, tmp_path, "my photo.png", gradient_image(400, 400, seed=5))
    page.fill("#prompt", "It's a \"quoted\" $HOME `prompt`\\n")
    page.click('#duration button[data-value="5"]')
    page.click("#advanced summary")
    page.fill("#seed", "42")
    page.click("#audio + .track")
    key = live_server.keys[0]

    # the panel re-renders after each change: wait until it shows both the seed and the audio switch
    page.wait_for_function("() => { const t = document.querySelector('#code').textContent;"
                           " return t.includes('\"seed\": 42') && t.includes('\"generate_audio\": false'); }")
    curl = page.inner_text("#code").replace("<YOUR_API_KEY>", key)
    assert "generate_audio\": false" in curl
    out = subprocess.run(["bash", "-c", curl.split("\n# then poll")[0]], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    created = httpx.get(live_server.url + "/v2/video/generations/" + json.loads(out.stdout)["id"],
                        headers=live_server.headers()).json()
    assert created["seed"] == 42 and created["status"] in ("queued", "generating", "completed")

    page.click('#code-tabs .tab[data-lang="python"]')
    page.wait_for_function("() => document.querySelector('#code').textContent.includes('import requests')")
    script = tmp_path / "gen.py"
    script.write_text(page.inner_text("#code").replace("<YOUR_API_KEY>", key))
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    assert "Video: http" in out.stdout, out.stdout


def test_phone_width_layout(browser, live_server: LiveServer, model: str, tmp_path: Path, artifacts: Path):
    with httpx.Client(base_url=live_server.url, headers=live_server.headers()) as c:
        r = c.post("/v2/video/generations", json={"model": model, "prompt": "for the phone gallery",
                                                  "image_url": data_uri(gradient_image(400, 300, seed=2))})
        wait_terminal(c, r.json()["id"])
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                  is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        page.goto(live_server.url + "/playground")
        page.evaluate("key => localStorage.setItem('clipforge.key', JSON.stringify(key))", live_server.keys[0])
        page.reload()
        page.wait_for_function("() => document.querySelectorAll('#model option').length > 0")
        page.wait_for_function("() => document.querySelectorAll('#gallery .tile').length > 0")
        page.select_option("#model", model)
        path = tmp_path / "phone.png"
        path.write_bytes(gradient_image(320, 480, seed=9))
        page.set_input_files("#image-file", str(path))
        page.fill("#prompt", "On a phone")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        for sel in ("#gen-form", ".output-card", ".code-card", ".gallery-card"):
            box = page.locator(sel).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (sel, box)
        page.screenshot(path=str(artifacts / "06-phone.png"), full_page=True)
        page.locator(".tile").first.click()
        page.locator(".output-card").scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / "07-phone-output.png"))
    finally:
        context.close()


def test_without_events_or_listing_it_polls_and_keeps_its_own_ids(page, live_server: LiveServer, tmp_path: Path,
                                                                 artifacts: Path):
    """Older servers: no SSE, no listing. The page polls at the Retry-After pace and lists the ids it made."""
    def missing(route):
        route.fulfill(status=404, json={"statusCode": 404, "message": "no route"})

    page.route("**/events", missing)
    page.route(lambda url: "/v2/video/generations?" in url and "generation_id=" not in url, missing)
    polls: list[float] = []
    page.on("request", lambda req: polls.append(time.monotonic())
            if re.search(r"/v2/video/generations/[^/?]+$", req.url) and req.method == "GET" else None)
    sign_in(page, live_server)
    page.select_option("#model", "test/medium")
    page.fill("#prompt", "polled, not streamed")
    page.click('#aspect button[data-value="1:1"]')
    page.click("#submit")
    page.wait_for_function("() => document.querySelector('#status-pill').textContent === 'completed'", timeout=60_000)
    assert page.inner_text("#progress-pct") == "100%"
    assert len(polls) >= 2
    gaps = [b - a for a, b in zip(polls, polls[1:], strict=False)]
    assert min(gaps) > 1.5, gaps  # the server's Retry-After is 2 s
    gen_id = page.evaluate("JSON.parse(localStorage.getItem('clipforge.ids'))[0]")

    page.reload()
    tile = page.locator(f'.tile[data-id="{gen_id}"]')
    tile.wait_for()
    assert "polled, not streamed" in tile.inner_text()
    assert "created in this browser" in page.inner_text("#gallery-source")
    page.screenshot(path=str(artifacts / "08-fallback-gallery.png"), full_page=True)


T2V = "klingai/video-v2-6-pro-text-to-video"


def generate(page, server: LiveServer) -> dict:
    """Press Generate; the generation the page created, as the API reports it."""
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/v2/video/generations")) as rsp:
        page.click("#submit")
    gen_id = rsp.value.json()["id"]
    return httpx.get(f"{server.url}/v2/video/generations/{gen_id}", headers=server.headers()).json()


def test_a_prompt_alone_runs_text_to_video_and_an_image_switches_to_image_to_video(
        page, live_server: LiveServer, tmp_path: Path, artifacts: Path):
    """The README's quickest look: sign in, type a prompt, press Generate; no model picked by hand."""
    sign_in(page, live_server)
    assert page.input_value("#model") == T2V
    assert "adding one switches to image-to-video" in page.inner_text("#image-need")
    page.fill("#prompt", "red sunset over a calm ocean, slow push in")
    gen_id = generate(page, live_server)["id"]
    page.wait_for_function("() => document.querySelector('#status-pill').textContent === 'completed'",
                           timeout=240_000)
    gen = httpx.get(f"{live_server.url}/v2/video/generations/{gen_id}", headers=live_server.headers()).json()
    assert gen["model"] == T2V and gen["status"] == "completed"
    assert (gen["output"]["width"], gen["output"]["height"]) == (1920, 1080)
    assert page.locator("#form-error").is_hidden() and page.inner_text('[data-error-for="image_url"]') == ""
    page.screenshot(path=str(artifacts / "09-prompt-alone.png"), full_page=True)

    # An image dropped in: the image-to-video half of the pair; removed again: back to text-to-video.
    choose_image(page, tmp_path, "first.png", gradient_image(480, 320, seed=4))
    assert page.input_value("#model") == PREVIEW_I2V
    assert "picked for the image" in page.inner_text("#model-hint")
    assert generate(page, live_server)["model"] == PREVIEW_I2V
    page.click("#image-field .remove")
    assert page.input_value("#model") == T2V
    # A model picked by hand is kept: the API then names the missing image next to the image field.
    page.select_option("#model", PREVIEW_I2V)
    page.click("#submit")
    page.wait_for_function("() => document.querySelector('[data-error-for=image_url]').textContent.length > 0")
    assert page.inner_text('[data-error-for="image_url"]').startswith("image_url")
    assert not page.console_errors, page.console_errors


def test_a_past_generation_opens_in_view_with_its_own_request_in_the_code_panel(
        page, live_server: LiveServer, artifacts: Path):
    ids = []
    with httpx.Client(base_url=live_server.url, headers=live_server.headers()) as c:
        for i, text in enumerate(("older clip of a harbour", "newer clip of a forest")):
            r = c.post("/v2/video/generations", json={"model": "test/fixed", "prompt": text, "seed": 1000 + i,
                                                       "duration": 10 if i == 0 else 5, "aspect_ratio": "1:1"})
            ids.append(r.json()["id"])
            wait_terminal(c, ids[-1])
    sign_in(page, live_server)
    page.fill("#prompt", "what the form says")
    page.wait_for_function("() => document.querySelector('#code').textContent.includes('what the form says')")
    assert "<GENERATION_ID>" in page.inner_text("#code") and "of the form" in page.inner_text(".code-card")

    tile = page.locator(f'.tile[data-id="{ids[0]}"]')
    tile.scroll_into_view_if_needed()
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    tile.click()
    # The output card settles right below the sticky header, fully in view.
    page.wait_for_function("""() => {
        const header = document.querySelector('.topbar').getBoundingClientRect();
        const out = document.querySelector('#output').getBoundingClientRect();
        return out.top >= header.bottom && out.top - header.bottom < 40; }""")
    page.wait_for_timeout(300)
    header = page.locator(".topbar").bounding_box()
    out = page.locator("#output").bounding_box()
    assert header["y"] + header["height"] <= out["y"] < header["y"] + header["height"] + 40, (header, out)
    assert page.evaluate("document.querySelector('#progress-detail').textContent") == "id " + ids[0]
    page.screenshot(path=str(artifacts / "10-past-generation-in-view.png"))

    # The Code panel shows that generation's request (its prompt, seed, duration) and polls its id.
    code = page.inner_text("#code")
    assert "older clip of a harbour" in code and '"seed": 1000' in code and '"duration": 10' in code
    assert "what the form says" not in code and "<GENERATION_ID>" not in code
    assert urllib.parse.quote(ids[0], safe="") in code
    page.click('#code-tabs .tab[data-lang="python"]')
    page.wait_for_function("() => document.querySelector('#code').textContent.includes('import requests')")
    assert "older clip of a harbour" in page.inner_text("#code")

    # Editing the form again shows the form's request, with no generation's id.
    page.fill("#prompt", "edited after opening")
    page.wait_for_function("() => document.querySelector('#code').textContent.includes('edited after opening')")
    code = page.inner_text("#code")
    assert "older clip of a harbour" not in code and urllib.parse.quote(ids[0], safe="") not in code
    assert not page.console_errors, page.console_errors


def test_api_docs_render_offline(page, live_server: LiveServer, artifacts: Path):
    """The header's "API docs" link opens Swagger UI built from files this server serves; nothing else loads."""
    seen: list[str] = []
    page.context.on("request", lambda req: seen.append(req.url))
    page.context.route(lambda url: not url.startswith(live_server.url), lambda route: route.abort())
    sign_in(page, live_server)
    with page.context.expect_page() as popup:
        page.click("a.navlink")
    docs = popup.value
    docs.wait_for_load_state()
    assert docs.url == live_server.url + "/docs"
    docs.locator(".swagger-ui .info .title").wait_for()
    assert "clipforge" in docs.inner_text(".swagger-ui .info .title")
    docs.locator(".opblock-summary-path", has_text="/v2/video/generations").first.wait_for()
    docs.screenshot(path=str(artifacts / "11-api-docs.png"))
    outside = [u for u in seen if not u.startswith((live_server.url, "data:", "blob:"))]
    assert not outside, outside
