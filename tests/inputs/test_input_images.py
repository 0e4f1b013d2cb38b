"""The input image rules, on real encoded images (clipforge.inputs.images)."""

from __future__ import annotations

import io
import warnings

import pytest
from PIL import Image

from clipforge.core.errors import InvalidInput
from clipforge.inputs.images import check_image_bytes, decode_image
from inputs.inputs_helpers import make_image, png_header_only


def refuse(data: bytes, rule: str, field: str = "image_url", **kw: int) -> str:
    with pytest.raises(InvalidInput) as info:
        check_image_bytes(data, field, **kw)
    assert info.value.rule == rule, info.value.message
    assert info.value.field == field
    assert info.value.message.startswith(f"{field}: ")
    return info.value.message


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_accepts_each_format(images: dict[str, bytes], fmt: str) -> None:
    checked = check_image_bytes(images[fmt], "image_url")
    assert (checked.format, checked.width, checked.height) == (fmt, 320, 400)
    assert checked.data == images[fmt]
    assert checked.content_type == f"image/{fmt}"
    assert checked.extension == {"jpeg": "jpg"}.get(fmt, fmt)


@pytest.mark.parametrize("fmt,name", [("GIF", "GIF"), ("BMP", "BMP"), ("TIFF", "TIFF")])
def test_refuses_other_formats(fmt: str, name: str) -> None:
    message = refuse(make_image(fmt), "image_format")
    assert f"image format is {name}" in message and "JPEG, PNG or WEBP" in message


def test_refuses_text_and_empty() -> None:
    assert "not a recognisable image" in refuse(b"hello, this is not an image", "image_format")
    refuse(b"", "image_format")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_refuses_truncated_files(fmt: str) -> None:
    noisy = Image.effect_noise((600, 600), 80).convert("RGB")  # noise, so half the file is half the pixels
    out = io.BytesIO()
    noisy.save(out, fmt)
    data = out.getvalue()
    assert "corrupt or truncated" in refuse(data[: len(data) // 2], "image_corrupt")


def test_refuses_truncated_header() -> None:
    refuse(make_image("PNG")[:20], "image_corrupt")


def test_too_small_message_names_rule_and_size() -> None:
    message = refuse(make_image("PNG", (200, 180)), "image_too_small")
    assert message == "image_url: image is 200x180 px; each side must be at least 300 px"


def test_one_short_side_is_too_small() -> None:
    refuse(make_image("PNG", (300, 299)), "image_too_small", field="tail_image_url")
    assert check_image_bytes(make_image("PNG", (300, 300)), "image_url").width == 300


@pytest.mark.parametrize("size", [(760, 300), (300, 760)])
def test_refuses_aspect_beyond_2_5(size: tuple[int, int]) -> None:
    message = refuse(make_image("PNG", size), "image_aspect")
    assert "760" in message and "2.53:1" in message and "between 1:2.5 and 2.5:1" in message


@pytest.mark.parametrize("size", [(750, 300), (300, 750)])
def test_accepts_aspect_exactly_2_5(size: tuple[int, int]) -> None:
    checked = check_image_bytes(make_image("PNG", size), "image_url")
    assert (checked.width, checked.height) == size


def test_refuses_too_many_bytes(images: dict[str, bytes]) -> None:
    message = refuse(images["png"], "image_too_large", max_bytes=100)
    assert f"image is {len(images['png'])} bytes" in message and "at most 100 bytes" in message


@pytest.mark.parametrize("side", [9000, 10000, 20000])  # own cap; Pillow's warning; Pillow's error
def test_refuses_decompression_bombs_without_warning(side: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        message = refuse(png_header_only(side, side), "image_bomb")
    assert "pixels" in message


def test_exif_rotation_reports_displayed_size() -> None:
    checked = check_image_bytes(make_image("JPEG", (400, 320), orientation=6), "image_url")
    assert (checked.width, checked.height) == (320, 400)


def test_exif_rotation_applies_before_aspect_rule() -> None:
    # Stored 300x300 and square either way; the rule sees the rotated size (and passes).
    assert check_image_bytes(make_image("JPEG", (300, 300), orientation=8), "image_url").width == 300
    message = refuse(make_image("JPEG", (320, 200), orientation=6), "image_too_small")
    assert "200x320 px" in message


def test_decode_image_is_rgb_and_rotated() -> None:
    im = Image.new("RGB", (400, 320), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 40, 40))  # red top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    out = io.BytesIO()
    im.save(out, "JPEG", exif=exif.tobytes(), quality=95)
    decoded = decode_image(out.getvalue())
    assert decoded.mode == "RGB" and decoded.size == (320, 400)
    red = decoded.getpixel((decoded.width - 10, 10))
    assert red[0] > 200 and red[2] < 60  # the red corner moved to top-right


def test_decode_image_composites_alpha_on_white() -> None:
    im = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    im.paste((0, 128, 0, 255), (0, 0, 10, 10))
    out = io.BytesIO()
    im.save(out, "PNG")
    decoded = decode_image(out.getvalue())
    assert decoded.mode == "RGB"
    assert decoded.getpixel((100, 100)) == (255, 255, 255)
    assert decoded.getpixel((5, 5)) == (0, 128, 0)


def test_decode_image_handles_16_bit_and_palette() -> None:
    grey16 = decode_image(make_image("PNG", (300, 300), mode="I;16", color=40000))
    assert grey16.getpixel((0, 0)) == (156,) * 3
    decoded = decode_image(make_image("PNG", (300, 300), mode="P", color=3))
    assert decoded.mode == "RGB"


def test_decode_image_refuses_bomb() -> None:
    with pytest.raises(InvalidInput) as info:
        decode_image(png_header_only(20000, 20000))
    assert info.value.rule == "image_bomb"


def test_concurrent_checks_decode_within_the_pixel_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst of big images is decoded a budget's worth at a time, not all at once (memory)."""
    import threading
    import time

    from clipforge.inputs import images as images_module

    data = make_image("png", (1000, 1000))
    budget = images_module.PixelBudget(1_500_000)  # room for one 1-megapixel decode at a time
    monkeypatch.setattr(images_module, "_DECODES", budget, raising=False)
    lock, active, peak = threading.Lock(), [0], [0]
    real_load = images_module._load

    def slow_load(im: Image.Image, field: str) -> None:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.2)
        try:
            real_load(im, field)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(images_module, "_load", slow_load)
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(check_image_bytes(data, "image_url")))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 4 and all(r.width == 1000 for r in results)  # type: ignore[attr-defined]
    assert peak[0] == 1
    assert budget.used == 0
