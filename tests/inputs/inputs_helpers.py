"""Image makers for the clipforge.inputs tests: tiny images built on the fly."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def make_image(fmt: str, size: tuple[int, int] = (320, 400), mode: str = "RGB",
               orientation: int | None = None, color: object = (200, 40, 40)) -> bytes:
    im = Image.new(mode, size, color)  # type: ignore[arg-type]
    out = io.BytesIO()
    kwargs: dict[str, object] = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    im.save(out, fmt, **kwargs)
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with a tiny IDAT: costs nothing to build."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))
