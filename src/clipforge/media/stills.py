"""Still images of a video: a JPEG thumbnail and a spritesheet grid."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

SPRITE_TILE_WIDTH = 256


def jpeg_bytes(rgb: np.ndarray, quality: int = 88) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def spritesheet(frames: list[np.ndarray], columns: int = 5, tile_width: int = SPRITE_TILE_WIDTH) -> np.ndarray:
    """A grid of the frames, `columns` wide, each scaled to `tile_width` (aspect kept)."""
    if not frames:
        raise ValueError("spritesheet needs at least one frame")
    h, w = frames[0].shape[:2]
    tile_h = max(2, round(tile_width * h / w))
    rows = math.ceil(len(frames) / columns)
    sheet = np.zeros((rows * tile_h, columns * tile_width, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        tile = np.asarray(Image.fromarray(frame).resize((tile_width, tile_h), Image.BILINEAR))
        r, c = divmod(i, columns)
        sheet[r * tile_h:(r + 1) * tile_h, c * tile_width:(c + 1) * tile_width] = tile
    return sheet
