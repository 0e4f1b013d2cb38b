"""Input image rules and decoding.

This module owns what an acceptable input image is (Kling's published limits: JPEG, PNG or WEBP;
at most 10 MB; each side at least 300 px; aspect between 1:2.5 and 2.5:1) and how a stored image
becomes RGB pixels for an engine. Images are decoded for real with Pillow, so a file that only
looks like an image by its header is refused. No network, no PyAV, no torch.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from clipforge.core.errors import InvalidInput

MAX_IMAGE_BYTES = 10 * 1024 * 1024
MIN_SIDE = 300
MAX_ASPECT = 2.5
MAX_PIXELS = 64_000_000

_PILLOW_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "WEBP": "webp"}
_CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}
# Rotations by 90 or 270 degrees in EXIF orientation (tag 0x0112) swap width and height.
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
_ORIENTATION_TAG = 0x0112
_MAGIC = ((b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
          (b"\x00\x00\x01\x00", "ICO"), (b"%PDF", "PDF"), (b"8BPS", "PSD"))
_OPEN_LOCK = threading.Lock()
# Pixels being decoded at once by `check_image_bytes` in this process. A 64-megapixel PNG can be a
# few hundred KB yet decodes to 256 MB; without a bound, a burst of them (each in its own thread,
# all before any quota is taken) holds gigabytes. Over the budget a check waits for others to end.
DECODE_BUDGET_PIXELS = 2 * MAX_PIXELS
_SUPPORTED_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")


class PixelBudget:
    """A counting semaphore over pixels: `hold(n)` waits until n more pixels fit under `total`."""

    def __init__(self, total: int) -> None:
        self.total, self.used = total, 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        pixels = max(1, min(pixels, self.total))  # one image over the whole budget waits to be alone
        with self._cond:
            self._cond.wait_for(lambda: self.used + pixels <= self.total)
            self.used += pixels
        try:
            yield
        finally:
            with self._cond:
                self.used -= pixels
                self._cond.notify_all()


_DECODES = PixelBudget(DECODE_BUDGET_PIXELS)


@dataclass(frozen=True)
class CheckedImage:
    """An image that passed every rule; `width` and `height` are as displayed (after EXIF rotation)."""

    data: bytes
    format: str  # "jpeg" | "png" | "webp"
    width: int
    height: int

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES[self.format]

    @property
    def extension(self) -> str:
        return _EXTENSIONS[self.format]


def check_image_bytes(data: bytes, field: str, max_bytes: int = MAX_IMAGE_BYTES) -> CheckedImage:
    """Check `data` against the input image rules; raise InvalidInput naming `field` on any breach.

    CPU-bound (it decodes every pixel): from async code call it with `asyncio.to_thread`.
    """
    _check_byte_size(len(data), field, max_bytes)
    im = _open(data, field)
    fmt = _PILLOW_FORMATS[im.format or ""]
    # Under the budget from here: reading a PNG's EXIF (for the orientation) decodes the whole image.
    with _DECODES.hold(im.size[0] * im.size[1]):
        width, height = _displayed_size(im)
        _check_sides(width, height, field)
        _check_aspect(width, height, field)
        _load(im, field)
    return CheckedImage(data=data, format=fmt, width=width, height=height)


def decode_image(data: bytes) -> Image.Image:
    """Decode a (previously checked) image to RGB, EXIF-rotated, alpha composited on white."""
    im = _open(data, "image")
    _load(im, "image")
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if im.mode.startswith("I;16"):
        # Pillow cannot convert 16-bit greyscale straight to RGB; scale to 8 bits first.
        im = im.point(lambda v: v / 256).convert("L")
    return im.convert("RGB")


def _check_byte_size(size: int, field: str, max_bytes: int) -> None:
    if size > max_bytes:
        raise InvalidInput(field, f"{field}: image is {size} bytes; it must be at most {max_bytes} bytes "
                           f"({max_bytes / 1024 / 1024:g} MB)", "image_too_large")
    if size == 0:
        raise InvalidInput(field, f"{field}: image is empty (0 bytes); expected a JPEG, PNG or WEBP file",
                           "image_format")


def _open(data: bytes, field: str) -> ImageFile.ImageFile:
    """Parse the header only; refuse unsupported formats and too many pixels before any decoding."""
    try:
        # Pillow signals a bomb with a warning (or an error when far over); make both exceptions here.
        # The warnings filter is process-global state, hence the lock: Image.open only reads headers.
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=["JPEG", "PNG", "WEBP"])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidInput(field, f"{field}: image has too many pixels to decode safely ({exc}); "
                           f"at most {MAX_PIXELS} pixels are allowed", "image_bomb") from exc
    except UnidentifiedImageError as exc:
        raise _format_error(data, field) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise _corrupt(field, exc) from exc
    if im.format not in _PILLOW_FORMATS:
        raise InvalidInput(field, f"{field}: image format is {im.format}; it must be JPEG, PNG or WEBP",
                           "image_format")
    _check_pixels(im.size, field)
    return im


def _format_error(data: bytes, field: str) -> InvalidInput:
    if data.startswith(_SUPPORTED_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return InvalidInput(field, f"{field}: image file is corrupt or truncated; its header cannot be read",
                            "image_corrupt")
    found = next((name for magic, name in _MAGIC if data.startswith(magic)), None)
    if found is None and data[4:8] == b"ftyp":
        found = "HEIF/AVIF"
    what = f"image format is {found}" if found else "data is not a recognisable image"
    return InvalidInput(field, f"{field}: {what}; it must be JPEG, PNG or WEBP", "image_format")


def _corrupt(field: str, exc: BaseException) -> InvalidInput:
    return InvalidInput(field, f"{field}: image file is corrupt or truncated ({exc}); "
                        "it must be a complete JPEG, PNG or WEBP file", "image_corrupt")


def _displayed_size(im: Image.Image) -> tuple[int, int]:
    width, height = im.size
    try:
        orientation = im.getexif().get(_ORIENTATION_TAG)
    except Exception:  # a broken EXIF block does not change how the pixels decode
        orientation = None
    return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)


def _check_pixels(size: tuple[int, int], field: str) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise InvalidInput(field, f"{field}: image is {width}x{height} px ({width * height} pixels); "
                           f"at most {MAX_PIXELS} pixels are allowed", "image_bomb")


def _check_sides(width: int, height: int, field: str) -> None:
    if min(width, height) < MIN_SIDE:
        raise InvalidInput(field, f"{field}: image is {width}x{height} px; each side must be at least "
                           f"{MIN_SIDE} px", "image_too_small")


def _check_aspect(width: int, height: int, field: str) -> None:
    # Integer comparison, so exactly 2.5:1 is accepted without float rounding doubts.
    if 2 * max(width, height) > 5 * min(width, height):
        raise InvalidInput(field, f"{field}: image is {width}x{height} px (aspect "
                           f"{max(width, height) / min(width, height):.2f}:1); the aspect ratio must be "
                           f"between 1:{MAX_ASPECT:g} and {MAX_ASPECT:g}:1", "image_aspect")


def _load(im: Image.Image, field: str) -> None:
    # Relies on PIL.ImageFile.LOAD_TRUNCATED_IMAGES staying False (Pillow's default) in this process.
    try:
        im.load()
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        raise _corrupt(field, exc) from exc
