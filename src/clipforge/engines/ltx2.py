"""LTX-2 (Lightricks): joint video + audio generation through diffusers' LTX-2 pipelines.

One set of weights serves three pipelines that share their components (`from_pipe`):
`LTX2Pipeline` (text-to-video), `LTX2ImageToVideoPipeline` (first frame) and
`LTX2ConditionPipeline` (first + last frame). With a latent upsampler, generation is two-stage as
diffusers' LTX-2 docs describe: stage 1 at half the model size, x2 latent upsampling, then a
3-step distilled refine at full size (re-noised to the first stage-2 sigma).

Request mapping (see docs/ltx2.md):
- frames: `request.num_frames` (duration x fps) rounded up to LTX's 8k+1 grid; the extra frames
  are dropped when yielding, so exactly `request.num_frames` come out.
- size: the model works at a size with the request's aspect ratio, sides divisible by 32 (64 when
  two-stage), about `max_pixels` pixels (never more than the output has); frames are resized to
  exactly `request.width` x `request.height`.
- `cfg_scale` c in 0..1 -> guidance 1 + 2c(g - 1), so 0.5 -> g (LTX's recommended value, config
  `guidance_scale`), 0 -> no guidance; the distilled stages always run without guidance.
- `negative_prompt`: LTX's recommended one when not given.
- `generate_audio` false -> the last stage returns latents and only the video VAE decodes them:
  no audio VAE and no vocoder work. `seed` -> a CPU `torch.Generator`.

Config (`[engines.ltx2]`), all optional except `path`:
  path                  local diffusers directory, or a Hugging Face repo id already in the cache
  cache_dir             Hugging Face cache directory (default: the hub's own default)
  upsampler             latent upsampler dir / repo id (default: `<path>/latent_upsampler`)
  two_stage             "auto" (when an upsampler is found) | true | false
  preset                "standard" (stage-1 steps with CFG, then distilled refine) | "fast" (distilled
                        sigmas in both stages; needs `distilled = true` or `distilled_lora`);
                        a request may pick one with spec.extra["preset"]
  distilled             the checkpoint is the distilled one (default false)
  distilled_lora        LoRA file (.safetensors) that makes the base model distilled, used in
                        distilled stages only (needs `peft`)
  steps                 stage-1 steps of `standard` (default 40)
  guidance_scale        recommended video CFG, what cfg_scale 0.5 maps to (default 4.0)
  audio_guidance_scale  recommended audio CFG (default: same as video)
  stg_scale, stg_blocks, modality_scale, guidance_rescale: LTX-2.3 extra guidance (default off)
  use_cross_timestep    "auto" (on for LTX-2.3+ transformers) | true | false
  max_pixels            model resolution budget in pixels (default 1280*720)
  max_sequence_length   prompt tokens (default 1024)
  dtype                 "auto" (bfloat16 on CUDA, float32 on CPU) | bfloat16 | float16 | float32
  device                "auto" (cuda if available) | cuda | cuda:1 | cpu ...
  offload               "auto" (default: the cheapest of none / text encoder on CPU / model / sequential
                        whose estimated peak fits the GPU's free memory at load; see ltx2_memory)
                        | none | model | sequential | group (CPU offload flavours of diffusers)
  vae_tiling            decode the VAE in spatial tiles (default true on CUDA)
  vae_temporal_tiling   also decode in overlapping groups of frames (default false)
  compile               regional torch.compile of the transformer blocks (default false)
  text_encoder_device   where Gemma runs, e.g. "cpu" while the rest is on CUDA (default: with the rest)
  text_encoder_dtype    its dtype (default: `dtype`)
  resident              keep weights loaded between jobs (default true) or load per job
  image_crf             H.264 CRF applied to conditioning images (default: the model's, 33 for LTX-2)
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import math
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clipforge.core.errors import EngineError, InvalidInput
from clipforge.engines.base import Engine, EngineOutput, EngineRequest, Readiness, StepCallback, no_progress

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

PRESETS = ("standard", "fast")
OFFLOAD_MODES = ("auto", "none", "model", "sequential", "group")
DEFAULT_MAX_PIXELS = 1280 * 720
DEFAULT_GUIDANCE = 4.0
DEFAULT_STEPS = 40
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# ----------------------------------------------------------------------------- request mapping (no torch)


def frames_on_grid(num_frames: int, temporal_ratio: int = 8) -> int:
    """The smallest k*temporal_ratio + 1 >= num_frames (LTX's causal VAE grid)."""
    if num_frames < 1:
        raise InvalidInput("duration", f"duration: {num_frames} frames requested; at least 1 is needed",
                           "positive")
    return math.ceil((num_frames - 1) / temporal_ratio) * temporal_ratio + 1


def model_size(width: int, height: int, max_pixels: int, multiple: int) -> tuple[int, int]:
    """A (width, height) with the output's aspect ratio, sides divisible by `multiple`, about
    min(max_pixels, width*height) pixels and never above `max_pixels`."""
    aspect = width / height
    pixels = max(min(max_pixels, width * height), multiple * multiple)
    w = max(multiple, int(math.sqrt(pixels * aspect) / multiple + 0.5) * multiple)
    h = max(multiple, int(math.sqrt(pixels / aspect) / multiple + 0.5) * multiple)
    while w * h > max(max_pixels, multiple * multiple):
        if w / h > aspect and w > multiple:
            w -= multiple
        elif h > multiple:
            h -= multiple
        else:
            w -= multiple
    return w, h


def guidance_for(cfg_scale: float, recommended: float) -> float:
    """cfg_scale 0..1 -> CFG guidance: 0 -> 1.0 (off), 0.5 -> recommended, 1 -> 2*recommended - 1."""
    c = min(1.0, max(0.0, float(cfg_scale)))
    return 1.0 + 2.0 * c * (recommended - 1.0)


def default_negative_prompt() -> str:
    try:
        from diffusers.pipelines.ltx2.utils import DEFAULT_NEGATIVE_PROMPT

        return DEFAULT_NEGATIVE_PROMPT
    except ImportError:  # pragma: no cover - older diffusers
        return ("shaky, glitchy, low quality, worst quality, deformed, distorted, disfigured, motion smear, "
                "motion artifacts, fused fingers, bad anatomy, weird hand, ugly, transition, static.")


def _is_local(path: str) -> bool:
    return os.path.exists(path) or not _REPO_ID.match(path) or path.startswith((".", "/", "~"))


def _missing_components(root: Path) -> list[str]:
    """Component folders that model_index.json names but `root` lacks."""
    import json

    index = json.loads((root / "model_index.json").read_text())
    missing = []
    for key, value in index.items():
        if key.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        if not (root / key).is_dir():
            missing.append(key)
    return missing


def _cached_snapshot(repo_id: str, filename: str, cache_dir: str | None) -> Path | None:
    """The cached file of a hub repo, or None; never touches the network."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir)
    return Path(found) if isinstance(found, str) else None


def _resolve_weights(config: dict[str, Any]) -> tuple[Path | None, str | None]:
    """(local root of the checkpoint, reason it is unusable)."""
    raw = config.get("path")
    if not raw:
        return None, "no weights configured: set `path` in [engines.ltx2] to a diffusers LTX-2 directory"
    path = str(raw)
    cache_dir = config.get("cache_dir")
    if _is_local(path):
        root = Path(path).expanduser()
        if not root.is_dir():
            return None, f"weights directory {root} does not exist (download LTX-2 there; see docs/ltx2.md)"
        if not (root / "model_index.json").is_file():
            return None, f"weights directory {root} has no model_index.json (not a diffusers checkpoint)"
    else:
        index = _cached_snapshot(path, "model_index.json", cache_dir)
        if index is None:
            offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
            return None, (f"Hugging Face repo {path} is not in the local cache{offline}; clipforge never "
                          f"downloads at run time: run `hf download {path}` first (see docs/ltx2.md)")
        root = index.parent
    missing = _missing_components(root)
    if missing:
        return None, f"checkpoint at {root} lacks components: {', '.join(missing)} (incomplete download?)"
    return root, None


def _resolve_upsampler(config: dict[str, Any], root: Path | None) -> tuple[Path | None, str | None]:
    """(directory holding the latent upsampler's config.json, or None; reason when configured but absent)."""
    raw = config.get("upsampler")
    if raw:
        raw = str(raw)
        if _is_local(raw):
            up = Path(raw).expanduser()
            if (up / "config.json").is_file():
                return up, None
            if (up / "latent_upsampler" / "config.json").is_file():
                return up / "latent_upsampler", None
            return None, f"latent upsampler {up} has no config.json"
        found = (_cached_snapshot(raw, "config.json", config.get("cache_dir"))
                 or _cached_snapshot(raw, "latent_upsampler/config.json", config.get("cache_dir")))
        if found is None:
            return None, f"latent upsampler repo {raw} is not in the local cache"
        return found.parent, None
    if root is not None and (root / "latent_upsampler" / "config.json").is_file():
        return root / "latent_upsampler", None
    return None, None


def _two_stage_setting(config: dict[str, Any]) -> str:
    value = config.get("two_stage", "auto")
    if isinstance(value, bool):
        return "on" if value else "off"
    return {"auto": "auto", "true": "on", "false": "off"}.get(str(value).lower(), "auto")


# ----------------------------------------------------------------------------- the engine


@dataclass
class _Stage:
    name: str
    width: int
    height: int
    steps: int
    sigmas: list[float] | None
    guidance: float
    audio_guidance: float | None
    distilled: bool  # as-is sigmas scheduler, distilled LoRA on, no extra guidance
    noise_scale: float = 0.0


class LTX2Engine(Engine):
    """LTX-2 video + audio through diffusers; see the module docstring for config and mapping."""

    name = "ltx2"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.preset = str(c.get("preset", "standard"))
        if self.preset not in PRESETS:
            raise ValueError(f"[engines.ltx2] preset must be one of {PRESETS}, not {self.preset!r}")
        self.offload = str(c.get("offload", "auto"))
        if self.offload not in OFFLOAD_MODES:
            raise ValueError(f"[engines.ltx2] offload must be one of {OFFLOAD_MODES}, not {self.offload!r}")
        self.max_pixels = int(c.get("max_pixels", DEFAULT_MAX_PIXELS))
        self.max_sequence_length = int(c.get("max_sequence_length", 1024))
        self.steps = int(c.get("steps", DEFAULT_STEPS))
        self.recommended_guidance = float(c.get("guidance_scale", DEFAULT_GUIDANCE))
        ag = c.get("audio_guidance_scale")
        self.recommended_audio_guidance = float(ag) if ag is not None else None
        self.stg_scale = float(c.get("stg_scale", 0.0))
        self.stg_blocks = list(c.get("stg_blocks", [29]))
        self.modality_scale = float(c.get("modality_scale", 1.0))
        self.guidance_rescale = float(c.get("guidance_rescale", 0.0))
        self.resident = bool(c.get("resident", True))
        self.distilled = bool(c.get("distilled", False))
        self.distilled_lora = c.get("distilled_lora")
        self._loaded = False
        self._pipes: dict[str, Any] = {}
        self._upsample_pipe: Any = None
        self._text_pipe: Any = None
        self._hooked: Any = None
        self._progress: tuple[int, int, str] = (0, 0, "")
        self._on_step: StepCallback = no_progress
        self._stop: BaseException | None = None
        self.memory_plan: Any = None  # ltx2_memory.Plan, set at load when offload = "auto"

    # -- readiness (cheap: no weights loaded; torch only to ask the driver for free memory)

    @classmethod
    def readiness(cls, config: dict[str, Any]) -> Readiness:
        for module in ("torch", "diffusers", "transformers"):
            if importlib.util.find_spec(module) is None:
                return Readiness(False, f"python package '{module}' is not installed: "
                                        "pip install 'clipforge[models]'")
        root, reason = _resolve_weights(config)
        if reason:
            return Readiness(False, reason)
        upsampler, reason = _resolve_upsampler(config, root)
        if reason:
            return Readiness(False, reason)
        if _two_stage_setting(config) == "on" and upsampler is None:
            return Readiness(False, f"two_stage = true but no latent upsampler: none at {root}/latent_upsampler "
                                    "and no `upsampler` configured")
        lora = config.get("distilled_lora")
        if lora:
            if not Path(str(lora)).expanduser().is_file():
                return Readiness(False, f"distilled_lora {lora} does not exist")
            if importlib.util.find_spec("peft") is None:
                return Readiness(False, "distilled_lora needs the 'peft' package: pip install peft")
        if str(config.get("preset", "standard")) == "fast" and not (config.get("distilled") or lora):
            return Readiness(False, "preset 'fast' needs distilled weights: set distilled = true for a distilled "
                                    "checkpoint, or distilled_lora")
        try:
            detail = cls._memory_plan(config, root, upsampler).summary()
        except Exception as exc:  # an estimate is advice: it never makes the engine unready
            detail = f"memory: no estimate ({type(exc).__name__}: {exc})"
        if str(config.get("offload", "auto")) != "auto":
            detail += f" (not used: offload = {config.get('offload')!r} is configured)"
        return Readiness(True, detail=detail)

    @staticmethod
    def _memory_plan(config: dict[str, Any], root: Path | None, upsampler: Path | None) -> Any:
        """The memory estimate for this config and the offload plan `auto` picks on this machine."""
        from clipforge.engines import ltx2_memory

        free = ltx2_memory.device_free_bytes(str(config.get("device", "auto")))
        return ltx2_memory.plan_for(config, root, upsampler if _two_stage_setting(config) != "off" else None, free)

    # -- loading

    def load(self) -> None:
        ready = self.readiness(self.config)
        if not ready.ready:
            raise EngineError(f"ltx2 is not ready: {ready.reason}")
        if self.resident:
            self._load()

    def _load(self) -> None:
        if self._loaded:
            return
        import torch
        from diffusers import FlowMatchEulerDiscreteScheduler
        from diffusers.pipelines.ltx2 import (
            LTX2ConditionPipeline,
            LTX2ImageToVideoPipeline,
            LTX2LatentUpsamplePipeline,
            LTX2LatentUpsamplerModel,
            LTX2Pipeline,
        )
        from diffusers.pipelines.ltx2.utils import resolve_default_image_crf

        c = self.config
        started = time.perf_counter()
        self.device = self._device(c.get("device", "auto"))
        self.dtype = self._dtype(c.get("dtype", "auto"), self.device)
        root, _ = _resolve_weights(c)
        upsampler_dir, _ = _resolve_upsampler(c, root)
        mode = _two_stage_setting(c)
        self.two_stage = upsampler_dir is not None and mode != "off"
        offload, te_device = self.offload, c.get("text_encoder_device")
        if offload == "auto":
            self.memory_plan = self._memory_plan(dict(c, device=str(self.device)), root, upsampler_dir)
            offload = self.memory_plan.offload
            te_device = te_device or ("cpu" if self.memory_plan.text_encoder_on_cpu else None)
            log.info("ltx2: %s", self.memory_plan.summary())

        i2v = LTX2ImageToVideoPipeline.from_pretrained(str(root), dtype=self.dtype, local_files_only=True)
        i2v.set_progress_bar_config(disable=True)
        with _quiet("diffusers.models.modeling_utils"):  # from_pipe re-applies the (same) dtype: no-op
            t2v = LTX2Pipeline.from_pipe(i2v, dtype=self.dtype)
            cond = LTX2ConditionPipeline.from_pipe(i2v, dtype=self.dtype)
        self._pipes = {"i2v": i2v, "t2v": t2v, "flf": cond}
        for pipe in self._pipes.values():
            pipe.set_progress_bar_config(disable=True)

        text_encoder = i2v.text_encoder
        self.image_crf = int(c["image_crf"]) if c.get("image_crf") is not None else \
            resolve_default_image_crf(text_encoder)
        self.use_cross_timestep = self._cross_timestep(c.get("use_cross_timestep", "auto"), i2v.transformer)
        self._sched_base = i2v.scheduler
        self._sched_distilled = FlowMatchEulerDiscreteScheduler.from_config(
            i2v.scheduler.config, use_dynamic_shifting=False, shift_terminal=None)

        # Where Gemma runs: with the pipelines (and their offload), or on its own device.
        te_device = self._device(te_device) if te_device else None
        if te_device is not None and te_device != self.device:
            te_dtype = self._dtype(c.get("text_encoder_dtype", str(self.dtype).replace("torch.", "")), te_device)
            text_encoder.to(device=te_device, dtype=te_dtype)
            self._text_pipe = LTX2Pipeline(scheduler=None, vae=None, audio_vae=None, text_encoder=text_encoder,
                                           tokenizer=i2v.tokenizer, connectors=None, transformer=None,
                                           vocoder=None)
            for pipe in self._pipes.values():
                pipe.register_modules(text_encoder=None)
            self.text_device = te_device
        else:
            self._text_pipe = None
            self.text_device = self.device  # every offload mode computes on `device`

        if self.two_stage:
            upsampler = LTX2LatentUpsamplerModel.from_pretrained(str(upsampler_dir), dtype=self.dtype,
                                                                 local_files_only=True)
            self._upsample_pipe = LTX2LatentUpsamplePipeline(vae=i2v.vae, latent_upsampler=upsampler)
            self._upsample_pipe.set_progress_bar_config(disable=True)

        if self.distilled_lora:
            lora = Path(str(self.distilled_lora)).expanduser()
            i2v.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name="distilled",
                                  local_files_only=True)
            i2v.disable_lora()

        self._place(torch, offload)
        if c.get("vae_tiling", self.device.type == "cuda"):
            i2v.vae.enable_tiling()
        if c.get("vae_temporal_tiling", False):
            i2v.vae.use_framewise_encoding = i2v.vae.use_framewise_decoding = True
        if c.get("compile", False):
            i2v.transformer.compile_repeated_blocks(fullgraph=bool(c.get("compile_fullgraph", False)))
        self.load_seconds = time.perf_counter() - started
        self._loaded = True
        log.info("ltx2: loaded %s in %.1fs (device %s, %s, offload %s, two-stage %s)", root,
                 self.load_seconds, self.device, self.dtype, self._offload, self.two_stage)

    @staticmethod
    def _device(name: Any) -> torch.device:
        import torch

        name = str(name or "auto")
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        return torch.device(name)

    @staticmethod
    def _dtype(name: Any, device: torch.device) -> torch.dtype:
        import torch

        name = str(name or "auto").replace("torch.", "")
        if name == "auto":
            return torch.bfloat16 if device.type == "cuda" else torch.float32
        aliases = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}
        dtype = getattr(torch, aliases.get(name, name), None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"[engines.ltx2] dtype {name!r} is not a torch dtype")
        return dtype

    @staticmethod
    def _cross_timestep(value: Any, transformer: Any) -> bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        return bool(getattr(transformer, "prompt_modulation", False))  # LTX-2.3+ modulates by the other sigma

    def _place(self, torch: Any, offload: str) -> None:
        """Put the shared components on the device, or set up one of diffusers' offload modes."""
        base = self._pipes["i2v"]
        if self.device.type == "cpu" and offload != "none":
            log.warning("ltx2: offload=%s needs an accelerator; running on CPU without offload", offload)
            offload = "none"
        self._offload = offload
        upsampler = self._upsample_pipe.latent_upsampler if self._upsample_pipe is not None else None
        if offload == "none":
            base.to(self.device)
            if upsampler is not None:
                upsampler.to(self.device)
        elif offload == "model":
            # Hooks live on the shared modules; each pipeline re-installs its chain before it runs.
            base.enable_model_cpu_offload(device=self.device)
            self._hooked = base
        elif offload == "sequential":
            base.enable_sequential_cpu_offload(device=self.device)  # once: the modules are shared
            if upsampler is not None:
                upsampler.to(self.device)
        elif offload == "group":
            from diffusers.hooks import apply_group_offloading

            stream = self.device.type == "cuda"
            base.enable_group_offload(onload_device=self.device, offload_device=torch.device("cpu"),
                                      offload_type="leaf_level", use_stream=stream)
            if upsampler is not None:
                apply_group_offloading(upsampler, onload_device=self.device, offload_type="leaf_level",
                                       use_stream=stream)

    def _activate(self, pipe: Any) -> None:
        """With model offload, let `pipe` own the offload hook chain before it runs."""
        if self._offload == "model" and self._hooked is not pipe:
            pipe.enable_model_cpu_offload(device=self.device)
            self._hooked = pipe

    def unload(self) -> None:
        self._pipes, self._upsample_pipe, self._text_pipe, self._hooked = {}, None, None, None
        was_loaded, self._loaded = self._loaded, False
        gc.collect()
        if was_loaded and importlib.util.find_spec("torch") is not None:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    # -- generation

    def plan(self, request: EngineRequest, temporal_ratio: int = 8) -> dict[str, Any]:
        """The model-side parameters of a request (frames, sizes, stages), without running anything."""
        from diffusers.pipelines.ltx2.utils import DISTILLED_SIGMA_VALUES, STAGE_2_DISTILLED_SIGMA_VALUES

        spec = request.spec
        preset = str(spec.extra.get("preset") or self.preset)
        if preset not in PRESETS:
            raise InvalidInput("preset", f"preset: {preset!r} is not one of {', '.join(PRESETS)}", "one_of")
        note = None
        if preset == "fast" and not (self.distilled or self.distilled_lora):
            preset, note = "standard", "preset 'fast' needs distilled weights; ran 'standard'"
        two_stage = self.two_stage
        width, height = model_size(request.width, request.height, self.max_pixels, 64 if two_stage else 32)
        guidance = guidance_for(spec.cfg_scale, self.recommended_guidance)
        audio_guidance = (guidance_for(spec.cfg_scale, self.recommended_audio_guidance)
                          if self.recommended_audio_guidance is not None else None)
        w1, h1 = (width // 2, height // 2) if two_stage else (width, height)
        if preset == "fast":
            first = _Stage("stage1" if two_stage else "denoise", w1, h1, len(DISTILLED_SIGMA_VALUES),
                           list(DISTILLED_SIGMA_VALUES), 1.0, 1.0, distilled=True)
        else:
            first = _Stage("stage1" if two_stage else "denoise", w1, h1, self.steps, None, guidance,
                           audio_guidance, distilled=self.distilled)
        stages = [first]
        if two_stage:
            stages.append(_Stage("stage2", width, height, len(STAGE_2_DISTILLED_SIGMA_VALUES),
                                 list(STAGE_2_DISTILLED_SIGMA_VALUES), 1.0, 1.0, distilled=True,
                                 noise_scale=STAGE_2_DISTILLED_SIGMA_VALUES[0]))
        mode = "flf" if request.tail_image is not None else ("i2v" if request.image is not None else "t2v")
        return {"preset": preset, "note": note, "mode": mode, "two_stage": two_stage,
                "model_width": width, "model_height": height,
                "model_frames": frames_on_grid(request.num_frames, temporal_ratio), "stages": stages}

    def generate(self, request: EngineRequest, on_step: StepCallback = no_progress) -> EngineOutput:
        if not self._loaded:
            self._load()
        try:
            return self._generate(request, on_step)
        finally:
            if not self.resident:
                self.unload()

    def _generate(self, request: EngineRequest, on_step: StepCallback) -> EngineOutput:
        import torch

        started = time.perf_counter()
        spec = request.spec
        pipe_any = self._pipes["i2v"]
        plan = self.plan(request, pipe_any.vae_temporal_compression_ratio)
        stages: list[_Stage] = plan["stages"]
        pipe = self._pipes[plan["mode"]]
        generator = torch.Generator("cpu").manual_seed(int(spec.seed))
        negative = spec.negative_prompt or default_negative_prompt()
        need_negative = any(s.guidance > 1.0 or (s.audio_guidance or 0.0) > 1.0 for s in stages)
        embeds = self._encode(pipe, spec.prompt, negative, need_negative)

        total = sum(s.steps for s in stages)
        self._on_step, self._progress, self._stop = on_step, (0, total, stages[0].name), None
        video_latents = audio_latents = None
        for index, stage in enumerate(stages):
            self._progress = (self._progress[0], total, stage.name)
            kwargs = self._stage_kwargs(plan, stage, request, embeds, generator)
            if video_latents is not None:
                kwargs.update(latents=video_latents, audio_latents=audio_latents, noise_scale=stage.noise_scale)
            self._set_distilled(pipe, stage.distilled)
            # Distilled sigmas are used as they are (no dynamic shifting), as diffusers' LTX-2 docs do.
            pipe.scheduler = self._sched_distilled if stage.sigmas is not None else self._sched_base
            self._activate(pipe)
            # Every stage returns latents; decoding is ours, so a cancel or `generate_audio: false`
            # costs no VAE / vocoder work.
            video_latents, audio_latents = pipe(
                **kwargs, output_type="latent", return_dict=False, callback_on_step_end=self._callback,
                callback_on_step_end_tensor_inputs=[])
            if self._stop is not None:
                raise self._stop
            if index < len(stages) - 1:
                self._activate(self._upsample_pipe)
                video_latents = self._upsample_pipe(latents=video_latents, output_type="latent",
                                                    return_dict=False)[0]
        video = self._decode_video(pipe, video_latents, generator)
        audio_np, sample_rate = None, 48_000
        if spec.generate_audio:
            audio_np = self._decode_audio(pipe, audio_latents)
            sample_rate = int(pipe.vocoder.config.output_sampling_rate)
        pipe.maybe_free_model_hooks()
        frames = _to_uint8(video[0])
        del video
        info = {k: plan[k] for k in ("preset", "mode", "two_stage", "model_width", "model_height",
                                     "model_frames")}
        info.update(steps=[s.steps for s in stages], guidance=[s.guidance for s in stages],
                    seconds=round(time.perf_counter() - started, 3))
        if plan["note"]:
            info["note"] = plan["note"]
        return EngineOutput(frames=_resized(frames, request.num_frames, request.width, request.height),
                            num_frames=request.num_frames, width=request.width, height=request.height,
                            fps=request.fps, audio=audio_np, sample_rate=sample_rate, info=info)

    def _stage_kwargs(self, plan: dict[str, Any], stage: _Stage, request: EngineRequest,
                      embeds: dict[str, Any], generator: Any) -> dict[str, Any]:
        cfg = stage.guidance > 1.0 or (stage.audio_guidance or 0.0) > 1.0
        kwargs: dict[str, Any] = {
            "prompt_embeds": embeds["prompt_embeds"],
            "prompt_attention_mask": embeds["prompt_attention_mask"],
            "width": stage.width, "height": stage.height, "num_frames": plan["model_frames"],
            "frame_rate": float(request.fps), "num_inference_steps": stage.steps, "sigmas": stage.sigmas,
            "guidance_scale": stage.guidance, "audio_guidance_scale": stage.audio_guidance,
            "use_cross_timestep": self.use_cross_timestep, "generator": generator,
            "max_sequence_length": self.max_sequence_length,
        }
        if cfg:
            kwargs["negative_prompt_embeds"] = embeds["negative_prompt_embeds"]
            kwargs["negative_prompt_attention_mask"] = embeds["negative_prompt_attention_mask"]
        extra = not stage.distilled and cfg
        stg = self.stg_scale if extra else 0.0
        kwargs.update(stg_scale=stg, audio_stg_scale=stg, spatio_temporal_guidance_blocks=self.stg_blocks if stg
                      else None, modality_scale=self.modality_scale if extra else 1.0,
                      audio_modality_scale=self.modality_scale if extra else 1.0,
                      guidance_rescale=self.guidance_rescale if extra else 0.0,
                      audio_guidance_rescale=self.guidance_rescale if extra else 0.0)
        if "decode_timestep" in self.config:
            kwargs["decode_timestep"] = float(self.config["decode_timestep"])
            kwargs["decode_noise_scale"] = float(self.config.get("decode_noise_scale",
                                                                 self.config["decode_timestep"]))
        size = (stage.width, stage.height)
        if plan["mode"] == "i2v":
            kwargs.update(image=_fit(request.image, size), image_crf=self.image_crf)
        elif plan["mode"] == "flf":
            from diffusers.pipelines.ltx2 import LTX2VideoCondition

            conditions = []
            if request.image is not None:
                conditions.append(LTX2VideoCondition(frames=_fit(request.image, size), index=0, strength=1.0,
                                                     crf=self.image_crf))
            conditions.append(LTX2VideoCondition(frames=_fit(request.tail_image, size), index=-1, strength=1.0,
                                                 crf=self.image_crf))
            kwargs["conditions"] = conditions
        return kwargs

    def _encode(self, pipe: Any, prompt: str, negative: str, need_negative: bool) -> dict[str, Any]:
        """Prompt embeddings, computed once per job and reused by both stages."""
        text_pipe = self._text_pipe or pipe
        if self._text_pipe is None:
            self._activate(pipe)
        pe, pm, ne, nm = text_pipe.encode_prompt(
            prompt=prompt, negative_prompt=negative, do_classifier_free_guidance=need_negative,
            max_sequence_length=self.max_sequence_length, device=self.text_device, dtype=self.dtype)
        if self._text_pipe is not None:  # move to where the transformer computes
            target = self.device
            pe, pm = pe.to(target), pm.to(target)
            ne = ne.to(target) if ne is not None else None
            nm = nm.to(target) if nm is not None else None
        return {"prompt_embeds": pe, "prompt_attention_mask": pm, "negative_prompt_embeds": ne,
                "negative_prompt_attention_mask": nm}

    def _set_distilled(self, pipe: Any, distilled: bool) -> None:
        if not self.distilled_lora:
            return
        if distilled:
            pipe.enable_lora()
            pipe.set_adapters(["distilled"], [1.0])
        else:
            pipe.disable_lora()

    def _callback(self, pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        done, total, stage = self._progress
        done += 1
        self._progress = (done, total, stage)
        try:
            self._on_step(done, total, stage)
        except Exception as exc:  # Cancelled (or a failing hook): stop after this step
            self._stop = exc
            pipe._interrupt = True
        return {}

    def _decode_video(self, pipe: Any, latents: Any, generator: Any) -> Any:
        """Decode the last stage's (denormalised) video latents as the pipeline's own decode does."""
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        vae = pipe.vae
        device = self.device  # the execution device in every offload mode (cheaper than asking the pipeline)
        latents = latents.to(device)
        timestep = None
        if vae.config.timestep_conditioning:
            t = float(self.config.get("decode_timestep", 0.0))
            scale = float(self.config.get("decode_noise_scale", t))
            if scale:
                normed = pipe._normalize_latents(latents, vae.latents_mean, vae.latents_std,
                                                 vae.config.scaling_factor)
                noise = randn_tensor(normed.shape, generator=generator, device=device, dtype=normed.dtype)
                latents = pipe._denormalize_latents((1 - scale) * normed + scale * noise, vae.latents_mean,
                                                    vae.latents_std, vae.config.scaling_factor)
            timestep = torch.tensor([t], device=device, dtype=latents.dtype)
        with torch.no_grad():
            video = vae.decode(latents.to(vae.dtype), timestep, return_dict=False)[0]
            return pipe.video_processor.postprocess_video(video, output_type="pt")

    @staticmethod
    def _decode_audio(pipe: Any, audio_latents: Any) -> np.ndarray:
        """Audio VAE -> mel spectrogram -> vocoder, as the pipeline does; float32 (channels, samples)."""
        import torch

        with torch.no_grad():
            mel = pipe.audio_vae.decode(audio_latents.to(pipe.audio_vae.dtype), return_dict=False)[0]
            audio = pipe.vocoder(mel)
        return audio[0].float().clamp(-1, 1).cpu().numpy()


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _to_uint8(video: Any, chunk: int = 16) -> np.ndarray:
    """(F, C, H, W) floats in [0, 1] on any device -> (F, H, W, 3) uint8 on the CPU, a few frames at a time
    (a 121-frame 720p clip is 1.3 GB as float32 but 330 MB as uint8)."""
    import torch

    out = np.empty((video.shape[0], video.shape[2], video.shape[3], video.shape[1]), dtype=np.uint8)
    for start in range(0, video.shape[0], chunk):
        part = (video[start:start + chunk].float() * 255.0).round().clamp(0, 255).to(torch.uint8)
        out[start:start + chunk] = part.permute(0, 2, 3, 1).cpu().numpy()
    return out


def _fit(image: Image.Image | None, size: tuple[int, int]) -> Image.Image:
    """Resize to cover `size` and centre-crop to it (keeps the picture's aspect)."""
    from PIL import Image as PILImage

    if image is None:
        raise InvalidInput("image_url", "image_url: this mode needs an input image", "required")
    w, h = size
    image = image.convert("RGB")
    scale = max(w / image.width, h / image.height)
    nw, nh = max(w, round(image.width * scale)), max(h, round(image.height * scale))
    image = image.resize((nw, nh), PILImage.Resampling.LANCZOS)
    left, top = (nw - w) // 2, (nh - h) // 2
    return image.crop((left, top, left + w, top + h))


def _resized(frames: np.ndarray, count: int, width: int, height: int) -> Iterator[np.ndarray]:
    """The first `count` frames, each resized to width x height (lazily)."""
    import cv2

    _, h, w, _ = frames.shape
    interp = cv2.INTER_AREA if width * height < w * h else cv2.INTER_CUBIC
    for i in range(min(count, frames.shape[0])):
        frame = frames[i]
        if (w, h) != (width, height):
            frame = cv2.resize(frame, (width, height), interpolation=interp)
        yield np.ascontiguousarray(frame)
