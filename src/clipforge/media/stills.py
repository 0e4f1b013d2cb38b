"""Still images of a video: a JPEG thumbnail and a spritesheet grid."""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
from PIL import Image

SPRITE_TILE_WIDTH = 256


def jpeg_bytes(rgb: np.ndarray, quality: int = 88) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def sprite_tile(frame: np.ndarray, tile_width: int = SPRITE_TILE_WIDTH) -> np.ndarray:
    """A frame scaled to `tile_width` wide (aspect kept), as kept for spritesheets."""
    h, w = frame.shape[:2]
    tile_h = max(2, round(tile_width * h / w))
    if (w, h) == (tile_width, tile_h):
        return frame.copy()
    return cv2.resize(frame, (tile_width, tile_h), interpolation=cv2.INTER_AREA)


def spritesheet(frames: list[np.ndarray], columns: int = 5, tile_width: int = SPRITE_TILE_WIDTH) -> np.ndarray:
    """A grid of the frames, `columns` wide, each scaled to `tile_width` (aspect kept)."""
    if not frames:
        raise ValueError("spritesheet needs at least one frame")
    tiles = [sprite_tile(f, tile_width) for f in frames]
    tile_h = tiles[0].shape[0]
    rows = math.ceil(len(tiles) / columns)
    sheet = np.zeros((rows * tile_h, columns * tile_width, 3), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * tile_h:(r + 1) * tile_h, c * tile_width:(c + 1) * tile_width] = tile
    return sheet
