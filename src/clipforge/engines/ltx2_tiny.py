"""A tiny, randomly initialised LTX-2 checkpoint, built locally with no download.

It has the real LTX-2 architecture and the real VAE compression ratios (32x spatial, 8x temporal,
so LTX's 8k+1 frame grid applies) at toy widths, a tiny Gemma 3 text encoder built from a config,
a word-level tokenizer, a vocoder that really outputs 24 kHz stereo, and a latent upsampler. It is
what the tests, `bench/ltx2_overhead.py` and `clipforge selftest` run the real `ltx2` engine on.
Its output is noise-like pictures and sounds: it checks plumbing, not quality.

    build_tiny_ltx2(Path("/tmp/tiny-ltx2"))   # writes a diffusers-format directory (~1 MB)
    selftest(Path("/tmp/clipforge-selftest"))  # builds it and runs the engine; returns a report
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

TINY_NATIVE_PIXELS = 64 * 64
"""A resolution budget for the tiny model: it generates 64x64 (two-stage: 32x32, upsampled x2)."""

_WORDS = (
    "a the of and in on with at to from by over under is are camera slowly pans zooms waves ocean sunset "
    "sky city street night rain forest cat dog bird robot dancing walking running light music sound wind "
    "car water fire mountain snow close up wide shot cinematic"
).split()


def _tokenizer(model_max_length: int) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials + list(dict.fromkeys(_WORDS)))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        model_max_length=model_max_length, padding_side="left",
    )


def tiny_components(seed: int = 0) -> dict[str, Any]:
    """The tiny components, keyed like `LTX2Pipeline`'s constructor, plus `latent_upsampler`."""
    import torch
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel, LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    tokenizer = _tokenizer(model_max_length=1024)
    torch.manual_seed(seed)
    text_layers, text_hidden = 2, 16
    te_config = Gemma3Config(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": text_hidden, "intermediate_size": 32,
            "num_hidden_layers": text_layers, "num_attention_heads": 2, "num_key_value_heads": 1,
            "head_dim": 8, "max_position_embeddings": 2048, "sliding_window": 64,
            "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2,
        },
        vision_config={
            "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "image_size": 8, "patch_size": 4,
        },
        mm_tokens_per_image=4,
    )
    text_encoder = Gemma3ForConditionalGeneration(te_config).eval()

    torch.manual_seed(seed)
    transformer = LTX2VideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
        num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16,
        audio_in_channels=4, audio_out_channels=4, audio_num_attention_heads=2, audio_attention_head_dim=4,
        audio_cross_attention_dim=8, num_layers=2, qk_norm="rms_norm_across_heads",
        caption_channels=text_hidden, rope_double_precision=False, rope_type="split",
        vae_scale_factors=(8, 32, 32),
    )
    torch.manual_seed(seed)
    connectors = LTX2TextConnectors(
        caption_channels=text_hidden, text_proj_in_factor=text_layers + 1,
        video_connector_num_attention_heads=2, video_connector_attention_head_dim=8,
        video_connector_num_layers=1, video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=2, audio_connector_attention_head_dim=8,
        audio_connector_num_layers=1, audio_connector_num_learnable_registers=None,
        connector_rope_base_seq_len=32, rope_theta=10000.0, rope_double_precision=False,
        causal_temporal_positioning=False, rope_type="split",
    )
    torch.manual_seed(seed)
    # patch 4 x three spatio-temporal downsamplings: 32x spatial, 8x temporal, as the real VAE.
    vae = AutoencoderKLLTX2Video(
        in_channels=3, out_channels=3, latent_channels=8,
        block_out_channels=(8, 8, 8), down_block_types=("LTX2VideoDownBlock3D",) * 3,
        decoder_block_out_channels=(8, 8, 8), layers_per_block=(1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1), spatio_temporal_scaling=(True, True, True),
        decoder_spatio_temporal_scaling=(True, True, True), decoder_inject_noise=(False,) * 4,
        downsample_type=("spatiotemporal",) * 3, upsample_type=("spatiotemporal",) * 3,
        upsample_residual=(False,) * 3, upsample_factor=(1, 1, 1), timestep_conditioning=False,
        patch_size=4, patch_size_t=1, encoder_causal=True, decoder_causal=False, decoder_spatial_padding_mode="zeros",
        spatial_compression_ratio=32, temporal_compression_ratio=8,
    )
    torch.manual_seed(seed)
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4, output_channels=2, ch_mult=(1,), num_res_blocks=1, attn_resolutions=None,
        in_channels=2, resolution=32, latent_channels=2, norm_type="pixel", causality_axis="height",
        dropout=0.0, mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160,
        is_causal=True, mel_bins=8,
    )
    torch.manual_seed(seed)
    # 100 mel frames/s x (6*5*2*2*2) = 24000 samples/s, like the real LTX-2 vocoder.
    vocoder = LTX2Vocoder(
        in_channels=audio_vae.config.output_channels * audio_vae.config.mel_bins, hidden_channels=32,
        out_channels=2, upsample_kernel_sizes=[12, 10, 4, 4, 4], upsample_factors=[6, 5, 2, 2, 2],
        resnet_kernel_sizes=[3], resnet_dilations=[[1, 3, 5]], leaky_relu_negative_slope=0.1,
        output_sampling_rate=24000,
    )
    torch.manual_seed(seed)
    latent_upsampler = LTX2LatentUpsamplerModel(
        in_channels=8, mid_channels=32, num_blocks_per_stage=1, dims=3, spatial_upsample=True,
        temporal_upsample=False, use_rational_resampler=False,
    )
    return {
        "scheduler": FlowMatchEulerDiscreteScheduler(
            use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05, base_image_seq_len=1024,
            max_image_seq_len=4096, shift_terminal=0.1,
        ),
        "vae": vae,
        "audio_vae": audio_vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "connectors": connectors,
        "transformer": transformer,
        "vocoder": vocoder,
        "latent_upsampler": latent_upsampler,
    }


TINY_LORA_FILE = "tiny-distilled-lora.safetensors"
"""A random LoRA on the tiny transformer, in the place of `ltx-2-19b-distilled-lora-384.safetensors`."""


def write_tiny_lora(transformer: Any, path: Path, seed: int) -> None:
    """A rank-4 LoRA on every attention projection, saved as diffusers' LTX-2 LoRA loader reads it."""
    import torch
    from diffusers import LTX2Pipeline
    from peft import LoraConfig, get_peft_model_state_dict

    torch.manual_seed(seed + 1)
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                       init_lora_weights=False), adapter_name="distilled")
    layers = get_peft_model_state_dict(transformer, adapter_name="distilled")
    LTX2Pipeline.save_lora_weights(str(path.parent), transformer_lora_layers=layers, weight_name=path.name)
    transformer.delete_adapters("distilled")


def build_tiny_ltx2(path: Path, seed: int = 0) -> Path:
    """Write a tiny diffusers-format LTX-2 checkpoint to `path` (with `latent_upsampler/` and a tiny
    distilled LoRA, `TINY_LORA_FILE`); return it."""
    from diffusers import LTX2Pipeline

    path = Path(path)
    if (path / "model_index.json").is_file() and (path / "latent_upsampler" / "config.json").is_file() \
            and (path / TINY_LORA_FILE).is_file():
        return path
    components = tiny_components(seed)
    upsampler = components.pop("latent_upsampler")
    pipe = LTX2Pipeline(**components)
    pipe.save_pretrained(str(path), safe_serialization=True)
    upsampler.save_pretrained(str(path / "latent_upsampler"), safe_serialization=True)
    write_tiny_lora(components["transformer"], path / TINY_LORA_FILE, seed)
    return path


def tiny_engine_config(path: Path, **overrides: Any) -> dict[str, Any]:
    """An `[engines.ltx2]` table for the tiny checkpoint: CPU, fp32, 64x64 native, short prompts, the
    tiny distilled LoRA (two-stage needs it)."""
    config: dict[str, Any] = {
        "path": str(path),
        "device": "cpu",
        "dtype": "float32",
        "max_pixels": TINY_NATIVE_PIXELS,
        "max_sequence_length": 32,
        "steps": 4,
        "preset": "standard",
        "two_stage": False,
        "distilled_lora": str(Path(path) / TINY_LORA_FILE),
    }
    config.update(overrides)
    return config


def selftest(workdir: Path) -> dict[str, Any]:
    """Build the tiny model under `workdir` and run the real `ltx2` engine on it (t2v, i2v, two-stage
    with the latent upsampler), then one job through the real worker and MP4 encoder.

    Returns a JSON-able report (also written to `workdir/selftest.json`): `ok`, per-check results,
    and timings in seconds. Needs the `models` extra (torch, diffusers, transformers) but no
    download and no GPU; takes a few seconds on 2 CPU cores.
    """
    import numpy as np
    from PIL import Image

    from clipforge.core.spec import GenerationSpec
    from clipforge.engines.base import EngineRequest
    from clipforge.engines.ltx2 import LTX2Engine

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"ok": False, "checks": {}, "timings": {}, "workdir": str(workdir)}
    t0 = time.perf_counter()
    model_dir = build_tiny_ltx2(workdir / "tiny-ltx2")
    report["timings"]["build_s"] = round(time.perf_counter() - t0, 3)

    config = tiny_engine_config(model_dir, two_stage=True)
    ready = LTX2Engine.readiness(config)
    report["checks"]["readiness"] = ready.as_dict()
    engine = LTX2Engine(config)
    t0 = time.perf_counter()
    engine.load()
    report["timings"]["load_s"] = round(time.perf_counter() - t0, 3)

    image = Image.fromarray(np.tile(np.linspace(0, 255, 96, dtype=np.uint8)[None, :, None], (64, 1, 3)))
    cases = {
        "t2v": EngineRequest(GenerationSpec(prompt="a robot dancing in the rain", seed=1), 64, 36),
        "i2v": EngineRequest(GenerationSpec(prompt="camera slowly zooms", seed=2, image="input"), 96, 64,
                             image=image),
    }
    all_ok = ready.ready
    for name, request in cases.items():
        steps: list[tuple[int, int, str]] = []
        t0 = time.perf_counter()
        out = engine.generate(request, on_step=lambda s, n, st, steps=steps: steps.append((s, n, st)))
        frames = list(out.frames)
        elapsed = time.perf_counter() - t0
        audio = out.audio
        check = {
            "frames": len(frames),
            "expected_frames": request.num_frames,
            "size": [int(frames[0].shape[1]), int(frames[0].shape[0])] if frames else None,
            "expected_size": [request.width, request.height],
            "audio_shape": list(audio.shape) if audio is not None else None,
            "sample_rate": out.sample_rate,
            "audio_peak": float(np.abs(audio).max()) if audio is not None else 0.0,
            "progress": [steps[-1][0], steps[-1][1]] if steps else None,
        }
        check["ok"] = bool(
            check["frames"] == request.num_frames
            and check["size"] == check["expected_size"]
            and audio is not None and audio.shape[0] in (1, 2) and check["audio_peak"] > 0
            and steps and steps[-1][0] == steps[-1][1]
        )
        all_ok = all_ok and check["ok"]
        report["checks"][name] = check
        report["timings"][f"{name}_s"] = round(elapsed, 3)
    engine.unload()

    t0 = time.perf_counter()
    try:
        worker_check = _worker_check(workdir, config)
    except Exception as exc:  # report, don't crash: this is an install check
        worker_check = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    report["checks"]["worker"] = worker_check
    report["timings"]["worker_s"] = round(time.perf_counter() - t0, 3)
    all_ok = all_ok and worker_check["ok"]
    report["ok"] = bool(all_ok)
    (workdir / "selftest.json").write_text(json.dumps(report, indent=2))
    return report


def _worker_check(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """One text-to-video job through the worker (memory job store, local files) to an MP4."""
    from clipforge.core.job import Job, JobStatus
    from clipforge.core.routing import parse_routing
    from clipforge.core.settings import Settings
    from clipforge.core.spec import GenerationSpec
    from clipforge.jobs.memory import MemoryJobStore
    from clipforge.media.probe import probe
    from clipforge.storage.local import LocalArtifactStore
    from clipforge.worker.loop import Worker

    routing = parse_routing({"models": {"ltx-2": {"engines": ["ltx2"]}}, "engines": {"ltx2": config}})
    store = MemoryJobStore()
    artifacts = LocalArtifactStore(workdir / "media")
    worker = Worker(store, artifacts, routing, Settings(home=workdir), worker_id="selftest")
    worker.check_engines()
    job = Job(id="selftest-t2v", owner="selftest", model="ltx-2", engine="ltx2",
              params={"spec": GenerationSpec(prompt="waves on the ocean at sunset", size=(64, 36)).to_dict()})
    store.create(job)
    worker.run_once()
    worker.runner.unload()
    done = store.get(job.id)
    check: dict[str, Any] = {"status": str(done.status.value if hasattr(done.status, "value") else done.status),
                             "progress": done.progress, "error": done.error}
    if done.status == JobStatus.COMPLETED:
        path = artifacts.local_path(done.outputs["video"])
        info = probe(path)
        check.update(video=str(path), frames=info.video.frames, size=[info.video.width, info.video.height],
                     duration=round(info.format_duration, 3),
                     audio_rate=info.audio.sample_rate if info.audio else None)
    check["ok"] = bool(done.status == JobStatus.COMPLETED and check.get("frames") == 120
                       and check.get("size") == [64, 36] and check.get("audio_rate") == 48_000)
    return check
