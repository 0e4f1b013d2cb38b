"""The real LTX-2 (19B) component configs as data, and a builder for them at real size.

The numbers are LTX-2.0's, as diffusers' conversion script (`scripts/convert_ltx2_to_diffusers.py`)
and the class defaults of diffusers 0.42.1 give them; `REAL_PARAMS` are the parameter counts these
configs have when built (on the meta device: no memory, no download). The memory planner
(`ltx2_memory`) reads its dimensions from here, and the benches build the components from here:
`bench/ltx2_memory.py` on the meta device to check the counts, `bench/ltx2_gpu.py` randomly
initialised on a GPU when no checkpoint is at hand. Importing this module does not import torch.

    build_real_components("meta")                        # every component, real size, no memory
    build_real_components("cuda", dtype=torch.bfloat16)  # random weights (timings only)
    build_real_components("meta", num_layers=1, names=("transformer",))  # one block, real widths
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

COMPONENTS = ("transformer", "text_encoder", "connectors", "vae", "latent_upsampler", "vocoder", "audio_vae")

TRANSFORMER = dict(
    in_channels=128, out_channels=128, patch_size=1, patch_size_t=1, num_attention_heads=32,
    attention_head_dim=128, cross_attention_dim=4096, vae_scale_factors=(8, 32, 32), pos_embed_max_pos=20,
    base_height=2048, base_width=2048, audio_in_channels=128, audio_out_channels=128, audio_patch_size=1,
    audio_patch_size_t=1, audio_num_attention_heads=32, audio_attention_head_dim=64,
    audio_cross_attention_dim=2048, audio_scale_factor=4, audio_pos_embed_max_pos=20,
    audio_sampling_rate=16000, audio_hop_length=160, num_layers=48, activation_fn="gelu-approximate",
    qk_norm="rms_norm_across_heads", norm_elementwise_affine=False, norm_eps=1e-6, caption_channels=3840,
    attention_bias=True, attention_out_bias=True, rope_theta=10000.0, rope_double_precision=True,
    causal_offset=1, timestep_scale_multiplier=1000, cross_attn_timestep_scale_multiplier=1000,
    rope_type="split",
)

VAE = dict(
    in_channels=3, out_channels=3, latent_channels=128, block_out_channels=(256, 512, 1024, 2048),
    down_block_types=("LTX2VideoDownBlock3D",) * 4, decoder_block_out_channels=(256, 512, 1024),
    layers_per_block=(4, 6, 6, 2, 2), decoder_layers_per_block=(5, 5, 5, 5),
    spatio_temporal_scaling=(True,) * 4, decoder_spatio_temporal_scaling=(True,) * 3,
    decoder_inject_noise=(False,) * 4, downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    upsample_residual=(True,) * 3, upsample_factor=(2, 2, 2), timestep_conditioning=False, patch_size=4,
    patch_size_t=1, resnet_norm_eps=1e-6, encoder_causal=True, decoder_causal=False,
    encoder_spatial_padding_mode="zeros", decoder_spatial_padding_mode="reflect", spatial_compression_ratio=32,
    temporal_compression_ratio=8,
)

AUDIO_VAE = dict(
    base_channels=128, output_channels=2, ch_mult=(1, 2, 4), num_res_blocks=2, attn_resolutions=None,
    in_channels=2, resolution=256, latent_channels=8, norm_type="pixel", causality_axis="height", dropout=0.0,
    mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160, is_causal=True, mel_bins=64,
    double_z=True,
)

VOCODER = dict(
    in_channels=128, hidden_channels=1024, out_channels=2, upsample_kernel_sizes=[16, 15, 8, 4, 4],
    upsample_factors=[6, 5, 2, 2, 2], resnet_kernel_sizes=[3, 7, 11], resnet_dilations=[[1, 3, 5]] * 3,
    leaky_relu_negative_slope=0.1, output_sampling_rate=24000,
)

LATENT_UPSAMPLER = dict(
    in_channels=128, mid_channels=1024, num_blocks_per_stage=4, dims=3, spatial_upsample=True,
    temporal_upsample=False, rational_spatial_scale=2.0,
)

CONNECTORS = dict(
    caption_channels=3840, text_proj_in_factor=49, video_connector_num_attention_heads=30,
    video_connector_attention_head_dim=128, video_connector_num_layers=2,
    video_connector_num_learnable_registers=128, audio_connector_num_attention_heads=30,
    audio_connector_attention_head_dim=128, audio_connector_num_layers=2,
    audio_connector_num_learnable_registers=128, connector_rope_base_seq_len=4096, rope_theta=10000.0,
    rope_double_precision=True, causal_temporal_positioning=False, rope_type="split",
)

GEMMA_TEXT = dict(
    hidden_size=3840, intermediate_size=15360, num_hidden_layers=48, num_attention_heads=16,
    num_key_value_heads=8, head_dim=256, vocab_size=262208, sliding_window=1024,
)
GEMMA_VISION = dict(
    hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16, image_size=896,
    patch_size=14,
)
GEMMA_MM_TOKENS_PER_IMAGE = 256

REAL_PARAMS: dict[str, int] = {
    "transformer": 18_876_174_592,
    "text_encoder": 12_202_563_392,
    "connectors": 1_431_475_200,
    "vae": 1_222_479_601,
    "latent_upsampler": 497_867_904,
    "vocoder": 55_592_802,
    "audio_vae": 53_248_146,
}
"""Parameters per component of the LTX-2.0 19B diffusers checkpoint (`Lightricks/LTX-2`)."""

DISTILLED_LORA_PARAMS = 3_700_000_000
"""About: `ltx-2-19b-distilled-lora-384`, rank 384 on every linear of the 48 blocks."""


@contextmanager
def _default_dtype(dtype: Any) -> Any:
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _gemma(num_layers: int | None) -> Any:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    text = dict(GEMMA_TEXT, max_position_embeddings=131072)
    vision = dict(GEMMA_VISION)
    if num_layers is not None:
        text["num_hidden_layers"], vision["num_hidden_layers"] = num_layers, num_layers
    config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=GEMMA_MM_TOKENS_PER_IMAGE)
    return Gemma3ForConditionalGeneration(config).eval()


def build_real_component(name: str, num_layers: int | None = None) -> Any:
    """One component at its real configuration (with `num_layers`: the transformer and Gemma cut down to
    that many blocks, everything else unchanged). Built wherever torch's default device points."""
    from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, LTX2VideoTransformer3DModel
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel, LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    if name == "transformer":
        config = dict(TRANSFORMER, num_layers=num_layers or TRANSFORMER["num_layers"])
        return LTX2VideoTransformer3DModel(**config).eval()
    if name == "text_encoder":
        return _gemma(num_layers)
    if name == "connectors":
        factor = (num_layers + 1) if num_layers is not None else CONNECTORS["text_proj_in_factor"]
        return LTX2TextConnectors(**dict(CONNECTORS, text_proj_in_factor=factor)).eval()
    classes = {"vae": (AutoencoderKLLTX2Video, VAE), "audio_vae": (AutoencoderKLLTX2Audio, AUDIO_VAE),
               "vocoder": (LTX2Vocoder, VOCODER), "latent_upsampler": (LTX2LatentUpsamplerModel, LATENT_UPSAMPLER)}
    if name not in classes:
        raise ValueError(f"unknown LTX-2 component {name!r}; one of {', '.join(COMPONENTS)}")
    cls, config = classes[name]
    return cls(**config).eval()


def build_real_components(device: str = "meta", dtype: Any = None, num_layers: int | None = None,
                          names: tuple[str, ...] = COMPONENTS) -> dict[str, Any]:
    """`names` built on `device` in `dtype` (default float32), parameters created there directly: on
    "meta" nothing is allocated; on "cuda" the random init runs on the GPU."""
    import torch

    built = {}
    with torch.device(device), _default_dtype(dtype or torch.float32):
        for name in names:
            built[name] = build_real_component(name, num_layers).requires_grad_(False)
    return built


def count_params(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())
