"""Temporal tiling of the LTX-2 video VAE decode, with tiles aligned on the frame grid.

diffusers 0.42.1's `AutoencoderKLLTX2Video._temporal_tiled_decode` decodes each later tile from its
first latent frame, which the causal grid turns into one pixel frame: the frame *before* the tile's
stride. It then drops the tile's last frame instead of that first one, so every tile after the
first lands one frame late (a repeated frame at each boundary, the last frame lost) and is blended
with the wrong frames of its neighbour. Measured on the tiny model (121 frames): after the first
boundary, tiled frame k equals untiled frame k-1 (mean |diff| 0.17/255) and not frame k (39.8/255).

`enable_temporal_tiling(vae)` swaps in the aligned version below and sets longer tiles (64 pixel
frames, 32 of overlap) than diffusers' 16/8, which leave the non-causal decoder 3 latent frames of
context. Tiled output still differs from an untiled decode where a tile's context is cut: how much
for the real weights is not measured here, so the option stays experimental and off by default.
"""

from __future__ import annotations

import types
from typing import Any

TILE_FRAMES = 64
TILE_STRIDE_FRAMES = 32


def enable_temporal_tiling(vae: Any, tile_frames: int = TILE_FRAMES, stride_frames: int = TILE_STRIDE_FRAMES) -> None:
    """Decode `vae` in overlapping groups of frames, aligned (see the module docstring)."""
    vae.use_framewise_decoding = True
    vae.tile_sample_min_num_frames, vae.tile_sample_stride_num_frames = tile_frames, stride_frames
    vae._temporal_tiled_decode = types.MethodType(aligned_temporal_tiled_decode, vae)


def aligned_temporal_tiled_decode(vae: Any, z: Any, temb: Any, causal: bool | None = None,
                                  return_dict: bool = True) -> Any:
    """diffusers' temporal tiled decode, with each later tile's first (one-frame) output dropped so
    that tile i starts on pixel frame i * stride + 1, where its neighbour's overlap does."""
    import torch
    from diffusers.models.autoencoders.vae import DecoderOutput

    ratio = vae.temporal_compression_ratio
    num_frames = z.shape[2]
    latent_tile, latent_stride = vae.tile_sample_min_num_frames // ratio, vae.tile_sample_stride_num_frames // ratio
    blend = vae.tile_sample_min_num_frames - vae.tile_sample_stride_num_frames
    stride = vae.tile_sample_stride_num_frames
    pieces, previous = [], None
    for i in range(0, num_frames, latent_stride):
        tile = _decode_tile(vae, z[:, :, i:i + latent_tile + 1], temb, causal)
        if previous is None:
            pieces.append(tile[:, :, :stride + 1])
        else:
            tile = tile[:, :, 1:]  # latent i's single causal frame is pixel i*8, the neighbour's last
            pieces.append(vae.blend_t(previous, tile, blend)[:, :, :stride])
        previous = tile
    dec = torch.cat(pieces, dim=2)[:, :, :(num_frames - 1) * ratio + 1]
    return DecoderOutput(sample=dec) if return_dict else (dec,)


def _decode_tile(vae: Any, tile: Any, temb: Any, causal: bool | None) -> Any:
    if vae.use_tiling and (tile.shape[-1] > vae.tile_sample_min_width // vae.spatial_compression_ratio
                           or tile.shape[-2] > vae.tile_sample_min_height // vae.spatial_compression_ratio):
        return vae.tiled_decode(tile, temb, causal=causal, return_dict=True).sample
    return vae.decoder(tile, temb, causal=causal)
