"""The official `openai` SDK's video calls against a running `clipforge serve`, unchanged but base URL and key."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import openai
import pytest
from PIL import Image

from clipforge.media.probe import decode_frames, probe
from helpers import LiveServer, gradient_image, psnr

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks the Sora API deprecated

FAST = {"model": "test/fixed", "size": "512x288", "poll_interval_ms": 100}


@pytest.fixture
def oai(live_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=live_server.url + "/v1", api_key=live_server.keys[0], max_retries=0)


def test_create_and_poll_text_to_video(oai: openai.OpenAI, tmp_path: Path):
    video = oai.videos.create_and_poll(prompt="waves at dusk", seconds="5", **FAST)
    assert video.status == "completed" and video.progress == 100 and video.error is None
    assert video.object == "video" and video.model == "test/fixed" and video.prompt == "waves at dusk"
    assert video.seconds == "5" and video.size == "512x288"
    assert video.completed_at >= video.created_at and video.expires_at > video.completed_at
    path = tmp_path / "v.mp4"
    oai.videos.download_content(video.id).write_to_file(path)
    info = probe(path)
    assert info.video.codec == "h264" and (info.video.width, info.video.height) == (512, 288)
    assert info.video.frames == 120 and info.audio.codec == "aac"


def test_create_and_poll_with_input_reference_file(oai: openai.OpenAI, tmp_path: Path):
    png = gradient_image(480, 320)
    video = oai.videos.create_and_poll(prompt="the scene comes alive", input_reference=("first.png", png,
                                       "image/png"), model="test/fixed", poll_interval_ms=100)
    assert video.status == "completed", video
    assert video.size == "480x320"  # no size: the image's own
    path = tmp_path / "i2v.mp4"
    path.write_bytes(oai.videos.download_content(video.id, variant="video").content)
    assert (probe(path).video.width, probe(path).video.height) == (480, 320)
    first = decode_frames(path, [0])[0]
    assert psnr(first, np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))) >= 35


def test_download_all_three_variants(oai: openai.OpenAI, tmp_path: Path):
    video = oai.videos.create_and_poll(prompt="variants", **FAST)
    mp4 = oai.videos.download_content(video.id, variant="video")
    assert mp4.response.headers["content-type"] == "video/mp4"
    (tmp_path / "a.mp4").write_bytes(mp4.content)
    assert probe(tmp_path / "a.mp4").video.frames == 120
    thumb = Image.open(io.BytesIO(oai.videos.download_content(video.id, variant="thumbnail").content))
    sprites = Image.open(io.BytesIO(oai.videos.download_content(video.id, variant="spritesheet").content))
    assert thumb.format == sprites.format == "JPEG"
    thumb.load(), sprites.load()
    assert thumb.size[0] / thumb.size[1] == pytest.approx(512 / 288, rel=0.05)
    assert sprites.size[0] > thumb.size[0] or sprites.size[1] > thumb.size[1]


def test_retrieve_and_poll_header(oai: openai.OpenAI):
    created = oai.videos.with_raw_response.create(prompt="poll me", model="test/fixed", size="512x288")
    video = created.parse()
    assert video.status == "queued" and created.headers["openai-poll-after-ms"] == "1000"
    got = oai.videos.retrieve(video.id)
    assert got.id == video.id and got.status in ("queued", "in_progress", "completed")
    assert oai.videos.poll(video.id, poll_interval_ms=100).status == "completed"
    done = oai.videos.with_raw_response.retrieve(video.id)
    assert "openai-poll-after-ms" not in done.headers


def test_list_paging(live_server: LiveServer):
    # a key of its own, so other tests' videos do not interfere
    oai = openai.OpenAI(base_url=live_server.url + "/v1", api_key=live_server.keys[1], max_retries=0)
    ids = [oai.videos.create(prompt=f"clip {i}", model="test/fixed", size="512x288").id for i in range(5)]
    first = oai.videos.list(limit=2)
    assert [v.id for v in first.data] == ids[::-1][:2] and first.has_more is True
    assert first.last_id == ids[3]
    assert [v.id for v in first.iter_pages().__next__().data] == [v.id for v in first.data]
    assert [v.id for v in oai.videos.list(limit=2)] == ids[::-1]  # auto-paging follows last_id
    asc = oai.videos.list(limit=3, order="asc")
    assert [v.id for v in asc.data] == ids[:3]
    rest = oai.videos.list(limit=3, order="asc", after=ids[2])
    assert [v.id for v in rest.data] == ids[3:] and rest.has_more is False


def test_remix_keeps_inputs_and_seed(oai: openai.OpenAI, tmp_path: Path):
    png = gradient_image(480, 320, seed=3)
    source = oai.videos.create_and_poll(prompt="original", input_reference=("a.png", png, "image/png"),
                                        model="test/fixed", seconds="10", poll_interval_ms=100)
    remix = oai.videos.remix(source.id, prompt="a remix")
    assert remix.remixed_from_video_id == source.id and remix.prompt == "a remix"
    assert remix.seconds == "10" and remix.size == "480x320" and remix.id != source.id
    done = oai.videos.poll(remix.id, poll_interval_ms=100)
    assert done.status == "completed"

    def frames(video_id: str) -> list[np.ndarray]:
        (tmp_path / "x.mp4").write_bytes(oai.videos.download_content(video_id).content)
        return decode_frames(tmp_path / "x.mp4", [0, 100])

    original, remixed = frames(source.id), frames(done.id)
    assert all(psnr(a, b) >= 40 for a, b in zip(original, remixed, strict=True))  # same image, same seed


def test_delete_removes_record_and_media(oai: openai.OpenAI, live_server: LiveServer):
    video = oai.videos.create_and_poll(prompt="to delete", input_reference=("a.png", gradient_image(), "image/png"),
                                       model="test/fixed", poll_interval_ms=100)
    media = live_server.home / "media"
    before = {p for p in media.rglob("*") if p.is_file()}
    deleted = oai.videos.delete(video.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (video.id, "video.deleted", True)
    gone = before - {p for p in media.rglob("*") if p.is_file()}
    assert {p.name for p in gone} == {"output.mp4", "thumbnail.jpg", "spritesheet.jpg", "image.png"}
    with pytest.raises(openai.NotFoundError):
        oai.videos.retrieve(video.id)
    with pytest.raises(openai.NotFoundError):
        oai.videos.delete(video.id)


def test_sdk_seconds_four_renders_exactly_four_seconds(oai: openai.OpenAI, tmp_path: Path):
    # the SDK's own value, through the preview engine (the packaged default engine), unchanged SDK call
    video = oai.videos.create_and_poll(prompt="a lighthouse at dusk, waves", seconds="4", size="512x288",
                                       model="klingai/video-v2-6-pro-text-to-video", poll_interval_ms=100)
    assert video.status == "completed", video.error
    assert video.seconds == "4" and video.size == "512x288"
    path = tmp_path / "four.mp4"
    oai.videos.download_content(video.id).write_to_file(path)
    info = probe(path)
    assert (info.video.width, info.video.height) == (512, 288) and info.video.frames == 96
    assert info.format_duration == pytest.approx(4.0, abs=1 / 24)
    assert info.audio.duration == pytest.approx(4.0, abs=1 / 24)


@pytest.mark.parametrize("seconds", ["4", "8", "12", "5", "10"])
def test_sdk_seconds_values_are_accepted(oai: openai.OpenAI, seconds: str):
    video = oai.videos.create(prompt="lengths", model="test/fixed", seconds=seconds, size="256x256")
    assert video.seconds == seconds and video.status == "queued"
    oai.videos.delete(video.id)  # only acceptance is checked here; lengths are rendered elsewhere


@pytest.mark.parametrize("size", ["720x1280", "1280x720", "1024x1792", "1792x1024"])
def test_sdk_sora_sizes_are_accepted(oai: openai.OpenAI, size: str):
    video = oai.videos.create(prompt="sizes", model="test/fixed", seconds="4", size=size)
    assert video.size == size and video.seconds == "4"
    oai.videos.delete(video.id)


def test_sdk_errors(oai: openai.OpenAI):
    with pytest.raises(openai.BadRequestError) as exc:
        oai.videos.create(prompt="x", model="test/fixed", seconds="6")
    assert '"4", "5", "8", "10" or "12"' in exc.value.message and exc.value.body["param"] == "seconds"
    with pytest.raises(openai.BadRequestError) as exc:
        oai.videos.create(prompt="x", model="test/fixed", size="1280x500")
    assert "aspect ratio" in exc.value.message
    with pytest.raises(openai.NotFoundError):
        oai.videos.retrieve("no-such-video")
    bad = openai.OpenAI(base_url=str(oai.base_url), api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.videos.list()


def test_async_sdk(live_server: LiveServer):
    import asyncio

    async def run() -> openai.types.Video:
        async with openai.AsyncOpenAI(base_url=live_server.url + "/v1", api_key=live_server.keys[0]) as client:
            return await client.videos.create_and_poll(prompt="async", **FAST)

    assert asyncio.run(run()).status == "completed"
