"""fal and Replicate engines against the contract fakes in fakes.py (no sockets), and the shared loop."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from clipforge.core.errors import Cancelled, ConfigError, EngineError, EngineUnavailable
from clipforge.core.spec import GenerationSpec
from clipforge.engines.hosted.base import HostedTask, InputImage
from clipforge.engines.hosted.fal import FalEngine
from clipforge.engines.hosted.replicate import ReplicateEngine
from clipforge.media.encode import encode_mp4
from engines.hosted.hosted_fakes import FakeFal, FakeReplicate
from helpers import gradient_image

I2V = "klingai/video-v2-6-pro-image-to-video"
T2V = "klingai/video-v2-6-pro-text-to-video"
FAL_KEY = "fal-key-7c1d:secret"
REP_KEY = "r8_secret_token_42"
FAST = {"poll_seconds": 0.01, "max_poll_seconds": 0.02}


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    frames = (np.full((64, 96, 3), 40 + 4 * i, np.uint8) for i in range(24))
    encode_mp4(path, frames, num_frames=24, width=96, height=64, fps=24,
               audio=np.zeros((1, 48_000), np.float32), sample_rate=48_000)
    return path.read_bytes()


def fal(fake: FakeFal, **config) -> FalEngine:
    return FalEngine({"media_hosts": ["*.fal.media"], **FAST, **config}, transport=fake.transport(),
                     environ={"FAL_KEY": FAL_KEY})


def replicate(fake: FakeReplicate, **config) -> ReplicateEngine:
    return ReplicateEngine({"media_hosts": ["replicate.delivery"], **FAST, **config},
                           transport=fake.transport(), environ={"REPLICATE_API_TOKEN": REP_KEY})


def task(tmp_path: Path, model: str = I2V, tail: bool = False, **spec) -> HostedTask:
    image = InputImage(gradient_image(480, 320), "image/png")
    stages: list[tuple[int, str]] = []
    t = HostedTask("job-1", model, GenerationSpec(prompt="a fox", **spec), tmp_path,
                   image if model == I2V else None, InputImage(gradient_image(480, 320, seed=2), "image/png")
                   if tail else None, lambda step, total, stage: stages.append((step, stage)))
    t.stages = stages  # type: ignore[attr-defined]
    return t


# -- fal -------------------------------------------------------------------------------------------
def test_fal_image_to_video_maps_fields_polls_the_documented_states_and_downloads(tmp_path, video):
    fake = FakeFal(FAL_KEY, video)
    t = task(tmp_path, tail=True, duration=10, generate_audio=False, negative_prompt="blur")
    result = fal(fake).run(t)
    submit = fake.sent("POST", "queue.fal.run")[0]
    assert str(submit.url) == "https://queue.fal.run/fal-ai/kling-video/v2.6/pro/image-to-video"
    body = fake.body(0)
    assert body["start_image_url"].startswith("data:image/png;base64,")
    assert body["end_image_url"].startswith("data:image/png;base64,")
    assert body["duration"] == "10" and body["generate_audio"] is False and body["negative_prompt"] == "blur"
    assert "cfg_scale" not in body and "seed" not in body and "aspect_ratio" not in body
    assert all(r.headers["authorization"] == f"Key {FAL_KEY}" for r in fake.requests if "queue.fal.run" in str(r.url))
    assert [r.url.params.get("logs") for r in fake.sent("GET", "/status")] == ["1"] * 4
    media = fake.sent("GET", "fal.media")[0]
    assert "authorization" not in media.headers  # the key never goes to a media host
    assert result.path.read_bytes() == video
    assert result.meta["provider_job_id"] == FakeFal.REQUEST_ID
    assert result.meta["usage"] == {"metrics": {"inference_time": 61.5}}
    stages = [s for _, s in t.stages]
    assert "upstream queued: position 2" in stages and "upstream generating: rendering" in stages
    assert stages[-1] == "downloading"


def test_fal_text_to_video_sends_aspect_ratio_and_cfg_scale(tmp_path, video):
    fake = FakeFal(FAL_KEY, video)
    fal(fake).run(task(tmp_path, model=T2V, aspect_ratio="9:16", cfg_scale=0.7))
    assert str(fake.requests[0].url).endswith("/fal-ai/kling-video/v2.6/pro/text-to-video")
    assert fake.body(0) == {"prompt": "a fox", "duration": "5", "generate_audio": True, "aspect_ratio": "9:16",
                            "cfg_scale": 0.7}


def test_fal_failure_body_reaches_the_user_prefixed_and_with_the_key_masked(tmp_path, video):
    fake = FakeFal(FAL_KEY, video, fail=f"image too small (key {FAL_KEY} was used)")
    with pytest.raises(EngineError) as caught:
        fal(fake).run(task(tmp_path))
    message = str(caught.value)
    assert message.startswith("fal: image too small") and "(HTTP 422)" in message
    assert FAL_KEY not in message and "***" in message


def test_provider_text_with_control_characters_or_lone_surrogates_is_made_safe_to_store(tmp_path, video):
    """PostgreSQL refuses NUL in text and \\u0000 in JSON, and a lone surrogate breaks every later JSON
    answer: what a provider says (failure, log line) is stored with such characters replaced."""
    class Odd(FakeFal):  # JSON with \\u0000 and \\ud800 escapes, as json.dumps writes them
        SEQUENCE = [{"status": "IN_PROGRESS", "logs": [{"message": "step\x00 \udfff 3"}]},
                    {"status": "COMPLETED", "logs": []}]

        def route(self, request):
            if request.method == "GET" and not request.url.path.endswith("/status"):
                return httpx.Response(422, content=json.dumps({"detail": "bad\x00 frame \ud800 \x1b[31m"}))
            return super().route(request)

        def status(self):
            state = self.SEQUENCE[min(self.polls, len(self.SEQUENCE) - 1)]
            self.polls += 1
            return httpx.Response(200, content=json.dumps(state))

    fake = Odd(FAL_KEY, video)
    t = task(tmp_path)
    with pytest.raises(EngineError) as caught:
        fal(fake).run(t)
    message = str(caught.value)
    assert message.startswith("fal: bad\ufffd frame \ufffd \ufffd[31m")
    stages = [stage for _, stage in t.stages]
    assert "upstream generating: step\ufffd \ufffd 3" in stages
    for text in [message, *stages]:
        text.encode("utf-8")  # no lone surrogate left
        assert not any(ord(ch) < 32 and ch not in "\t\n" for ch in text), text


def test_fal_429_waits_retry_after_then_succeeds(tmp_path, video):
    fake = FakeFal(FAL_KEY, video, throttle=2, retry_after="0.3")
    started = time.monotonic()
    fal(fake, max_retries=3).run(task(tmp_path))
    assert time.monotonic() - started >= 0.6  # two waits of Retry-After
    assert len(fake.sent("GET", "/status")) == 4 + 2


def test_fal_429_past_the_retries_is_transient(tmp_path, video):
    fake = FakeFal(FAL_KEY, video, throttle=10, retry_after="0")
    with pytest.raises(EngineUnavailable, match=r"fal: rate limited \(HTTP 429\)"):
        fal(fake, max_retries=2).run(task(tmp_path))
    assert fake.cancelled  # the submitted request is cancelled before failing over


def task_cancelled_while_generating(tmp_path):
    """A task whose cancel flag is seen once the provider reports it is generating."""
    t = task(tmp_path)

    def on_step(step, total, stage):
        if stage.startswith("upstream generating"):
            raise Cancelled("Cancelled by request")

    t.on_step = on_step
    return t


def test_fal_cancel_is_sent_upstream_and_polling_stops(tmp_path, video):
    fake = FakeFal(FAL_KEY, video)
    t = task_cancelled_while_generating(tmp_path)
    with pytest.raises(Cancelled):
        fal(fake).run(t)
    assert fake.cancelled and fake.sent("PUT", "/cancel")[0].headers["authorization"] == f"Key {FAL_KEY}"
    assert len(fake.sent("GET", "/status")) == 3  # no poll after the cancel


def test_a_checkpointed_job_resumes_polling_without_submitting(tmp_path, video):
    fake = FakeFal(FAL_KEY, video)
    t = task(tmp_path)
    saved: list[dict] = []
    t.save_checkpoint = saved.append
    fal(fake).run(t)
    assert saved[0]["id"] == FakeFal.REQUEST_ID and saved[0]["engine"] == "fal"
    again = FakeFal(FAL_KEY, video)
    t2 = task(tmp_path)
    t2.checkpoint = saved[0]
    result = fal(again).run(t2)
    assert not again.sent("POST", "queue.fal.run") and result.meta["provider_job_id"] == FakeFal.REQUEST_ID


def test_fal_unknown_model_and_missing_key(tmp_path, video):
    with pytest.raises(EngineError, match=r"no upstream model for 'other/model'.*upstream_models"):
        fal(FakeFal(FAL_KEY, video)).run(task(tmp_path, model="other/model"))
    state = FalEngine.readiness({}, environ={})
    assert not state.ready and "FAL_KEY" in state.reason
    with pytest.raises(ConfigError, match="api_key: a key is never read from the models config.*api_key_env"):
        FalEngine({"api_key": FAL_KEY}, environ={"FAL_KEY": FAL_KEY})


# -- downloads -------------------------------------------------------------------------------------
def test_result_links_off_the_upstream_host_pass_the_ssrf_guard(tmp_path, video):
    fake = FakeFal(FAL_KEY, video)
    fake.media_url = "http://127.0.0.1:9/steal.mp4"
    with pytest.raises(EngineError, match=r"fal: refused to download the result: .*127\.0\.0\.1.*media_hosts"):
        fal(fake).run(task(tmp_path))


def test_downloads_are_size_capped(tmp_path, video):
    with pytest.raises(EngineError, match="over the 1000-byte download limit"):
        fal(FakeFal(FAL_KEY, video), max_download_bytes=1000).run(task(tmp_path))


def test_a_trickling_download_stops_at_download_timeout_seconds(tmp_path, video):
    slow = FakeFal(FAL_KEY, video, trickle=(100, 0.02))  # the result host sends a byte every 20 ms: 2 s
    started = time.monotonic()
    with pytest.raises(EngineError, match=r"took over 0\.3 s \(download_timeout_seconds\)"):
        fal(slow, download_timeout_seconds=0.3).run(task(tmp_path))
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("link", ["https://collector.example/fal-ai/kling-video/requests/1/status",
                                  "http://queue.fal.run/fal-ai/kling-video/requests/1/status",
                                  "https://queue.fal.run:8443/fal-ai/kling-video/requests/1/status"])
def test_provider_api_links_off_the_base_url_origin_never_get_the_key(tmp_path, video, link):
    """A status/result/cancel link on another origin is not followed (the key goes with API requests):
    the engine uses the documented path on base_url instead."""
    fake = FakeFal(FAL_KEY, video)
    route = fake.route

    def off_origin(request):
        response = route(request)
        if request.method == "POST":
            return httpx.Response(200, json={**response.json(), "status_url": link, "response_url": link,
                                             "cancel_url": link})
        return response

    fake.route = off_origin
    engine = fal(fake)
    result = engine.run(task(tmp_path))
    assert result.path.read_bytes() == video
    api = [r for r in fake.requests if r.url.host != "v3.fal.media"]
    assert all(str(r.url).startswith("https://queue.fal.run/fal-ai/kling-video/v2.6/pro/image-to-video")
               for r in api), [str(r.url) for r in api]
    with pytest.raises(EngineError, match="another host .*refusing to send the key there") as caught:
        engine.http.request("GET", link)  # and the HTTP layer itself refuses such a link
    assert FAL_KEY not in str(caught.value)


@pytest.mark.timeout(30)  # without the cap the poll loop sleeps for the billion seconds
@pytest.mark.parametrize("retry_after", ["1e9", "inf"])
def test_a_huge_retry_after_on_a_status_poll_cannot_outlast_job_timeout_seconds(tmp_path, video, retry_after):
    class Stuck(FakeFal):  # always IN_PROGRESS, asking to be polled again in a billion seconds
        def status(self):
            self.polls += 1
            return httpx.Response(200, json={"status": "IN_PROGRESS", "logs": []},
                                  headers={"retry-after": retry_after})

    started = time.monotonic()
    with pytest.raises(EngineError, match=r"did not finish within 0\.5 s \(job_timeout_seconds\)"):
        fal(Stuck(FAL_KEY, video), job_timeout_seconds=0.5).run(task(tmp_path))
    assert time.monotonic() - started < 3


# -- replicate -------------------------------------------------------------------------------------
def test_replicate_prediction_lifecycle(tmp_path, video):
    fake = FakeReplicate(REP_KEY, video)
    t = task(tmp_path, negative_prompt="text")
    result = replicate(fake).run(t)
    create = fake.requests[0]
    assert str(create.url) == "https://api.replicate.com/v1/models/kwaivgi/kling-v2.6/predictions"
    assert create.headers["authorization"] == f"Bearer {REP_KEY}"
    body = fake.body(0)["input"]
    assert body["start_image"].startswith("data:image/png;base64,") and body["duration"] == 5
    assert body["negative_prompt"] == "text" and body["generate_audio"] is True
    assert "aspect_ratio" not in body and "end_image" not in body
    assert result.meta["provider_job_id"] == FakeReplicate.PREDICTION_ID
    assert result.meta["usage"] == {"metrics": {"predict_time": 42.5}}
    assert result.path.read_bytes() == video
    assert any(step == 400 for step, _ in t.stages)  # "40%" in the logs became progress


def test_replicate_failure_and_throttling(tmp_path, video):
    fake = FakeReplicate(REP_KEY, video, fail="E006: The input image could not be processed", throttle=1,
                         retry_after="0.1")
    with pytest.raises(EngineError, match="^replicate: E006: The input image could not be processed$"):
        replicate(fake).run(task(tmp_path))
    assert fake.polls == 4  # the 429 was retried, not counted as a state


def test_replicate_cancel(tmp_path, video):
    fake = FakeReplicate(REP_KEY, video)
    t = task_cancelled_while_generating(tmp_path)
    with pytest.raises(Cancelled):
        replicate(fake).run(t)
    cancel = fake.sent("POST", "/cancel")[0]
    assert str(cancel.url).endswith(f"/v1/predictions/{FakeReplicate.PREDICTION_ID}/cancel")


def test_replicate_readiness_checks_the_token_without_predictions(video, monkeypatch):
    good = FakeReplicate(REP_KEY, video)
    bad = FakeReplicate("another-token", video)
    original = ReplicateEngine.__init__

    def with_fake(fake):
        def init(self, config=None, transport=None, environ=None):
            original(self, config, fake.transport(), environ)
        return init

    monkeypatch.setattr(ReplicateEngine, "__init__", with_fake(good))
    assert ReplicateEngine.readiness({}, environ={"REPLICATE_API_TOKEN": REP_KEY}).ready
    monkeypatch.setattr(ReplicateEngine, "__init__", with_fake(bad))
    state = ReplicateEngine.readiness({}, environ={"REPLICATE_API_TOKEN": REP_KEY})
    assert not state.ready and "REPLICATE_API_TOKEN" in state.reason and "401" in state.reason
    assert REP_KEY not in state.reason
    assert [r.url.path for r in good.requests + bad.requests] == ["/v1/account", "/v1/account"]


def test_limits_refuse_what_the_provider_cannot_do():
    from clipforge.core.capabilities import AIML_FIELD_NAMES, asked_fields, refusal

    limits = ReplicateEngine.limits({})
    asked = asked_fields({"duration": 5, "generate_audio": True}, has_image=True, has_tail=True)
    field, message = refusal("replicate", limits, asked, AIML_FIELD_NAMES)
    assert field == "tail_image_url" and "does not take tail_image_url" in message
    assert refusal("fal", FalEngine.limits({}), asked, AIML_FIELD_NAMES) is None
    assert FalEngine.limits({"unsupported": ["negative_prompt"]})["negative_prompt"] is None


def test_the_three_line_models_toml_of_the_docs_routes_the_seed_models_to_aiml(tmp_path):
    from clipforge.core.routing import load_routing
    from clipforge.engines.hosted.aiml import AimlEngine
    from clipforge.engines.registry import engine_readiness

    path = tmp_path / "models.toml"
    path.write_text('models."klingai/video-v2-6-pro-image-to-video".engines = ["aiml"]\n'
                    'models."klingai/video-v2-6-pro-text-to-video".engines = ["aiml"]\n'
                    'engines.aiml.api_key_env = "AIMLAPI_API_KEY"\n')
    routing = load_routing(path)
    assert routing.route(I2V).engines == ("aiml",) and routing.route(T2V).engines == ("aiml",)
    engine = AimlEngine(routing.engine_config("aiml"), environ={"AIMLAPI_API_KEY": "k"})
    assert engine.base_url == "https://api.aimlapi.com" and engine.upstream_model(I2V) == I2V
    state = engine_readiness("aiml", {"api_key_env": "H13_SURELY_UNSET_VARIABLE"})
    assert not state.ready and "H13_SURELY_UNSET_VARIABLE" in state.reason


def test_a_nan_or_infinite_progress_from_the_provider_is_not_a_crash(tmp_path):
    t = task(tmp_path)
    for value in (float("nan"), float("inf"), -float("inf"), 0.5):
        t.report(value, "upstream generating")
    assert [step for step, _ in t.stages] == [0, 0, 0, 500]
