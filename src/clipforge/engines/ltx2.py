"""LTX-2 (Lightricks): joint video + audio generation through diffusers' LTX-2 pipelines.

One set of weights serves two pipelines that share their components (`from_pipe`): `LTX2Pipeline`
(text-to-video) and `PixelConditionPipeline` (`engines/ltx2_conditions.py`: diffusers'
`LTX2ConditionPipeline` with keyframes on pixel frames) for first frame and first + last frame.
With a latent upsampler and distilled weights (checkpoint or LoRA), generation is two-stage as
Lightricks' `TI2VidTwoStagesPipeline` does: stage 1 at half the model size, x2 latent upsampling, then
a 3-step distilled refine at full size (re-noised to the first stage-2 sigma) that re-encodes the
input images at full size; the audio is stage 1's (stage 2 refines the video only).

Request mapping (see docs/ltx2.md):
- frames: `request.num_frames` (duration x fps) rounded up to LTX's 8k+1 grid; the extra frames
  are dropped when yielding, so exactly `request.num_frames` come out. A tail image is pinned on the
  last frame the user receives (pixel frame num_frames - 1).
- size: the model works at a size close to the request's aspect ratio, sides divisible by 32 (64 when
  two-stage), about `max_pixels` pixels (never more than the output has); frames are scaled by one
  factor to cover `request.width` x `request.height` and centre-cropped (never stretched).
- guidance: a set (`reference` | `cheap`, config `guidance` or spec.extra["guidance"]) gives the
  video / audio CFG, STG, modality guidance and rescale; `cfg_scale` c in 0..1 scales the CFGs:
  1 + 2c(g - 1), so 0.5 -> the set's value, 0 -> no guidance at all; distilled stages never guide.
- `negative_prompt`: LTX's recommended one when not given; its embeddings are cached per process.
- `generate_audio` false -> every stage returns latents and only the video VAE decodes them:
  no audio VAE and no vocoder work. `seed` -> a CPU `torch.Generator`.
- generation runs under `torch.inference_mode()`, and no parameter requires grad.
- CUDA out of memory -> `OutOfMemory` (an `EngineError`) with advice, after emptying the CUDA cache.

Config (`[engines.ltx2]`), all optional except `path`:
  path                  local diffusers directory, or a Hugging Face repo id already in the cache
  cache_dir             Hugging Face cache directory (default: the hub's own default)
  upsampler             latent upsampler dir / repo id (default: `<path>/latent_upsampler`)
  two_stage             "auto" (when an upsampler and distilled weights are found) | true | false
  preset                "standard" (stage-1 steps with CFG, then distilled refine) | "fast" (distilled
                        sigmas in both stages; needs `distilled = true` or `distilled_lora`);
                        a request may pick one with spec.extra["preset"]
  distilled             the checkpoint is the distilled one (default false): always the distilled
                        schedule (8 + 3 steps, no guidance), whatever the preset
  distilled_lora        `ltx-2-19b-distilled-lora-384.safetensors`: makes the base model distilled in
                        distilled stages only (needs `peft`); two-stage needs it (or `distilled`)
  steps                 stage-1 steps of `standard` (default 40)
  guidance              "reference" (LTX-2.0: video CFG 3, audio CFG 7, STG 1 on block 29, modality 3,
                        rescale 0.7; 4 transformer passes per step) | "cheap" (the same CFGs and rescale,
                        no STG / modality: 2 passes per step); default "reference"
  guidance_scale, audio_guidance_scale, stg_scale, stg_blocks, modality_scale, guidance_rescale:
                        override the set's values
  use_cross_timestep    "auto" (on for LTX-2.3+ transformers) | true | false
  max_pixels            model resolution budget in pixels (default 1280*720)
  max_sequence_length   prompt tokens (default 1024)
  dtype                 "auto" (bfloat16 on CUDA, float32 on CPU) | bfloat16 | float16 | float32
                        (the vocoder always runs in float32)
  device                "auto" (cuda if available) | cuda | cuda:1 | cpu ...
  offload               "auto" (default: the cheapest of none / text encoder on CPU / model / sequential
                        whose estimated peak fits the GPU's free memory at load; see ltx2_memory)
                        | none | model | sequential | group (CPU offload flavours of diffusers)
  vae_tiling            decode the VAE in spatial tiles (default true on CUDA)
  vae_temporal_tiling   experimental: also decode in overlapping groups of frames (default false)
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
import sys
import time
import traceback
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clipforge.core.errors import EngineError, InvalidInput, OutOfMemory
from clipforge.engines.base import Engine, EngineOutput, EngineRequest, Readiness, StepCallback, no_progress
from clipforge.engines.options import Option

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

PRESETS = ("standard", "fast")
OFFLOAD_MODES = ("none", "model", "sequential", "group", "auto")
DTYPES = ("auto", "bfloat16", "float16", "float32", "bf16", "fp16", "half", "fp32", "float")
AUTO_OR_BOOL = ("auto", True, False, "true", "false")
_NUM, _INT, _STR, _BOOL = (float,), (int,), (str,), (bool,)

# `[engines.ltx2]` as the module docstring describes it; checked at start (clipforge.engines.options).
OPTIONS = (
    Option("path", _STR), Option("cache_dir", _STR), Option("upsampler", _STR),
    Option("two_stage", choices=AUTO_OR_BOOL), Option("preset", choices=PRESETS),
    Option("distilled", _BOOL), Option("distilled_lora", _STR), Option("steps", _INT),
    Option("guidance", choices=("reference", "cheap")),
    Option("guidance_scale", _NUM), Option("audio_guidance_scale", _NUM), Option("stg_scale", _NUM),
    Option("stg_blocks", (list,)), Option("modality_scale", _NUM), Option("guidance_rescale", _NUM),
    Option("use_cross_timestep", choices=AUTO_OR_BOOL), Option("max_pixels", _INT),
    Option("max_sequence_length", _INT), Option("dtype", choices=DTYPES), Option("device", _STR),
    Option("offload", choices=OFFLOAD_MODES), Option("vae_tiling", _BOOL), Option("vae_temporal_tiling", _BOOL),
    Option("compile", _BOOL), Option("compile_fullgraph", _BOOL), Option("text_encoder_device", _STR),
    Option("text_encoder_dtype", choices=DTYPES), Option("resident", _BOOL), Option("image_crf", _INT),
    Option("decode_timestep", _NUM), Option("decode_noise_scale", _NUM),
)
DEFAULT_MAX_PIXELS = 1280 * 720
DEFAULT_STEPS = 40
DISTILLED_LORA_FILE = "ltx-2-19b-distilled-lora-384.safetensors"
GUIDANCE_SETS: dict[str, dict[str, Any]] = {
    # Lightricks' LTX-2.0 reference (ltx_pipelines/utils/constants.py, LTX_2_PARAMS). Per step: CFG
    # (conditional + unconditional, batched: 2 passes' work), STG (+1 pass), modality isolation (+1 pass).
    "reference": {"guidance_scale": 3.0, "audio_guidance_scale": 7.0, "stg_scale": 1.0, "stg_blocks": [29],
                  "modality_scale": 3.0, "guidance_rescale": 0.7},
    # The same CFGs and rescale without the two extra passes: half the transformer work per step.
    "cheap": {"guidance_scale": 3.0, "audio_guidance_scale": 7.0, "stg_scale": 0.0, "stg_blocks": [29],
              "modality_scale": 1.0, "guidance_rescale": 0.7},
}
NEGATIVE_CACHE_SIZE = 4
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# ----------------------------------------------------------------------------- request mapping (no torch)


def frames_on_grid(num_frames: int, temporal_ratio: int = 8) -> int:
    """The smallest k*temporal_ratio + 1 >= num_frames (LTX's causal VAE grid)."""
    if num_frames < 1:
        raise InvalidInput("duration", f"duration: {num_frames} frames requested; at least 1 is needed",
                           "positive")
    return math.ceil((num_frames - 1) / temporal_ratio) * temporal_ratio + 1


def model_size(width: int, height: int, max_pixels: int, multiple: int) -> tuple[int, int]:
    """The (width, height) the model runs at: sides divisible by `multiple`, at most
    max(min(max_pixels, width*height), multiple**2) pixels, chosen for the most pixels that survive
    cropping to the output's aspect, counted twice (a crop costs pixels and field of view): the
    output is cut from it by `_to_output`, never stretched."""
    aspect = width / height
    limit = max(min(max_pixels, width * height), multiple * multiple)
    best, best_score = (multiple, multiple), -1.0
    for h in range(multiple, limit // multiple + 1, multiple):
        low = max(multiple, int(h * aspect / multiple) * multiple)
        for w in {max(multiple, low - multiple), low, low + multiple}:
            if w * h > limit:
                continue
            kept = min(w / h / aspect, aspect * h / w)
            score = w * h * kept * kept
            if score > best_score + 1e-9:
                best, best_score = (w, h), score
    return best


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


def _has_distilled_weights(config: dict[str, Any]) -> bool:
    """Stage 2's distilled sigmas are only right for a distilled checkpoint or the distilled LoRA."""
    return bool(config.get("distilled")) or bool(config.get("distilled_lora"))


def _guidance_set(config: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """The named guidance set (default: config `guidance`), with the config's own overrides."""
    name = str(name or config.get("guidance", "reference"))
    if name not in GUIDANCE_SETS:
        raise InvalidInput("guidance", f"guidance: {name!r} is not one of {', '.join(GUIDANCE_SETS)}", "one_of")
    values = dict(GUIDANCE_SETS[name])
    for key in values:
        if config.get(key) is not None:
            values[key] = list(config[key]) if key == "stg_blocks" else float(config[key])
    return values


def _is_cuda_oom(exc: BaseException) -> bool:
    """torch's (CUDA) out-of-memory error, recognised without importing torch."""
    return any(cls.__name__ == "OutOfMemoryError" and cls.__module__.startswith("torch")
               for cls in type(exc).__mro__)


# ----------------------------------------------------------------------------- the engine


@dataclass
class _Stage:
    name: str
    width: int
    height: int
    steps: int
    sigmas: list[float] | None
    guidance: float  # video CFG; 1.0 = off
    audio_guidance: float
    distilled: bool  # as-is sigmas scheduler, distilled LoRA on, no guidance
    noise_scale: float = 0.0
    stg_scale: float = 0.0
    stg_blocks: list[int] | None = None
    modality_scale: float = 1.0
    guidance_rescale: float = 0.0

    @property
    def guided(self) -> bool:
        return self.guidance > 1.0 or self.audio_guidance > 1.0


def _guided_stage(name: str, size: tuple[int, int], steps: int, cfg_scale: float,
                  values: dict[str, Any]) -> _Stage:
    """A stage on the checkpoint's own schedule with the guidance set `values`, scaled by cfg_scale."""
    video, audio = guidance_for(cfg_scale, values["guidance_scale"]), guidance_for(cfg_scale,
                                                                                    values["audio_guidance_scale"])
    stage = _Stage(name, size[0], size[1], steps, None, video, audio, distilled=False)
    if stage.guided:  # cfg_scale 0 turns every guidance term off (one transformer pass per step)
        stage.stg_scale, stage.stg_blocks = values["stg_scale"], list(values["stg_blocks"])
        stage.modality_scale, stage.guidance_rescale = values["modality_scale"], values["guidance_rescale"]
    return stage


def _distilled_stage(name: str, size: tuple[int, int], sigmas: list[float], noise_scale: float = 0.0) -> _Stage:
    """A stage on distilled sigmas (diffusers' lists, without the final 0): no guidance."""
    return _Stage(name, size[0], size[1], len(sigmas), list(sigmas), 1.0, 1.0, distilled=True,
                  noise_scale=noise_scale)


class LTX2Engine(Engine):
    """LTX-2 video + audio through diffusers; see the module docstring for config and mapping."""

    name = "ltx2"
    options = OPTIONS

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
        self.guidance = str(c.get("guidance", "reference"))
        if self.guidance not in GUIDANCE_SETS:
            raise ValueError(f"[engines.ltx2] guidance must be one of {tuple(GUIDANCE_SETS)}, not {self.guidance!r}")
        self.resident = bool(c.get("resident", True))
        self.distilled = bool(c.get("distilled", False))
        self.distilled_lora = c.get("distilled_lora")
        self._negatives: OrderedDict[tuple[str, int, str], tuple[Any, Any]] = OrderedDict()
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
                return Readiness(False, f"python package '{module}' is not installed: make install-gpu "
                                        "(in the checkout) or pip install 'clipforge[models]'")
        root, reason = _resolve_weights(config)
        if reason:
            return Readiness(False, reason)
        upsampler, reason = _resolve_upsampler(config, root)
        if reason:
            return Readiness(False, reason)
        if _two_stage_setting(config) == "on" and upsampler is None:
            return Readiness(False, f"two_stage = true but no latent upsampler: none at {root}/latent_upsampler "
                                    "and no `upsampler` configured")
        if _two_stage_setting(config) == "on" and not _has_distilled_weights(config):
            return Readiness(False, f"two_stage = true needs the distilled LoRA {DISTILLED_LORA_FILE} "
                                    "(set distilled_lora to its path) or a distilled checkpoint (distilled = true): "
                                    "stage 2 refines with distilled sigmas")
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
            detail = cls._memory_plan(config, root, upsampler).summary()  # plans for two stages: an upper bound
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
        """Load everything, or, when anything fails, release all that was loaded before raising
        (so a retry on the next job does not hold two copies of the weights)."""
        if self._loaded:
            return
        try:
            self._load_components()
            return
        except Exception as exc:
            oom, detail = _is_cuda_oom(exc), _first_line(exc)
            traceback.clear_frames(exc.__traceback__)  # the half-built pipelines live in those frames
            self.unload()
            if not oom:
                raise
        raise OutOfMemory(self._oom_message("loading the weights", detail))

    def _load_components(self) -> None:
        import torch
        from diffusers import FlowMatchEulerDiscreteScheduler
        from diffusers.pipelines.ltx2 import LTX2LatentUpsamplePipeline, LTX2LatentUpsamplerModel, LTX2Pipeline
        from diffusers.pipelines.ltx2.utils import resolve_default_image_crf

        from clipforge.engines.ltx2_conditions import PixelConditionPipeline

        c = self.config
        started = time.perf_counter()
        self.device = self._device(c.get("device", "auto"))
        self.dtype = self._dtype(c.get("dtype", "auto"), self.device)
        root, _ = _resolve_weights(c)
        upsampler_dir, _ = _resolve_upsampler(c, root)
        mode = _two_stage_setting(c)
        # Stage 2's distilled sigmas need distilled weights; readiness refuses `two_stage = true` without.
        self.two_stage = upsampler_dir is not None and mode != "off" and _has_distilled_weights(c)
        if upsampler_dir is not None and mode == "auto" and not self.two_stage:
            log.warning("ltx2: latent upsampler found but no distilled weights (%s or distilled = true): "
                        "running one stage", DISTILLED_LORA_FILE)
        offload, te_device = self.offload, c.get("text_encoder_device")
        if offload == "auto":
            self.memory_plan = self._memory_plan(dict(c, device=str(self.device)), root, upsampler_dir)
            offload = self.memory_plan.offload
            te_device = te_device or ("cpu" if self.memory_plan.text_encoder_on_cpu else None)
            log.info("ltx2: %s", self.memory_plan.summary())

        # Image conditions (first frame, first + last) go through one condition pipeline, which
        # re-encodes them at each stage's size (diffusers' I2V pipeline ignores `image` in stage 2).
        i2v = PixelConditionPipeline.from_pretrained(str(root), dtype=self.dtype, local_files_only=True)
        self._pipes = {"i2v": i2v, "flf": i2v}
        with _quiet("diffusers.models.modeling_utils"):  # from_pipe re-applies the (same) dtype: no-op
            self._pipes["t2v"] = LTX2Pipeline.from_pipe(i2v, dtype=self.dtype)
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

        with _quiet("diffusers.models.modeling_utils"):  # it warns about keep-in-fp32 modules: there are none
            i2v.vocoder.to(torch.float32)  # bf16 accumulation degrades the vocoder (Lightricks runs it in fp32)
        self._freeze()
        self._place(torch, offload)
        if c.get("vae_tiling", self.device.type == "cuda"):
            i2v.vae.enable_tiling()
        if c.get("vae_temporal_tiling", False):  # experimental: see engines/ltx2_vae.py
            from clipforge.engines.ltx2_vae import enable_temporal_tiling

            enable_temporal_tiling(i2v.vae)
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

    def _modules(self) -> list[Any]:
        """Every torch module the engine holds (shared ones once)."""
        import torch

        pipes = [*self._pipes.values(), self._text_pipe, self._upsample_pipe]
        found: dict[int, Any] = {}
        for pipe in pipes:
            for value in (pipe.components.values() if pipe is not None else ()):
                if isinstance(value, torch.nn.Module):
                    found.setdefault(id(value), value)
        return list(found.values())

    def _freeze(self) -> None:
        """Inference only: eval mode, and no parameter requires grad (diffusers' `encode_prompt` runs
        outside `no_grad`; a grad-tracking Gemma keeps its whole graph alive for the job)."""
        for module in self._modules():
            module.eval().requires_grad_(False)

    def _oom_message(self, doing: str, detail: str) -> str:
        offload = getattr(self, "_offload", self.offload)
        advice = {"none": 'set offload = "model" or text_encoder_device = "cpu", or lower max_pixels',
                  "model": 'set offload = "group" or "sequential" or text_encoder_device = "cpu", or lower '
                           'max_pixels'}.get(offload, "lower max_pixels")
        return (f"The GPU ran out of memory while {doing} ({detail}; offload = {offload!r}). Try a shorter "
                f"clip or a smaller size, or ask the operator to {advice} in [engines.ltx2] (see docs/ltx2.md).")

    def release_memory(self) -> None:
        """After a failed job: collect garbage and return cached CUDA blocks; the weights stay loaded."""
        gc.collect()
        torch = sys.modules.get("torch")  # never imported: nothing of ours to free, and no import cost
        if torch is not None:
            torch.cuda.empty_cache()  # a no-op when CUDA was never initialised

    def _activate(self, pipe: Any) -> None:
        """With model offload, let `pipe` own the offload hook chain before it runs."""
        if self._offload == "model" and self._hooked is not pipe:
            pipe.enable_model_cpu_offload(device=self.device)
            self._hooked = pipe

    def unload(self) -> None:
        self._pipes, self._upsample_pipe, self._text_pipe, self._hooked = {}, None, None, None
        self._sched_base = self._sched_distilled = None
        self._loaded = False
        self.release_memory()

    # -- generation

    def plan(self, request: EngineRequest, temporal_ratio: int = 8) -> dict[str, Any]:
        """The model-side parameters of a request (frames, sizes, stages), without running anything."""
        from diffusers.pipelines.ltx2.utils import DISTILLED_SIGMA_VALUES, STAGE_2_DISTILLED_SIGMA_VALUES

        spec = request.spec
        preset = str(spec.extra.get("preset") or self.preset)
        if preset not in PRESETS:
            raise InvalidInput("preset", f"preset: {preset!r} is not one of {', '.join(PRESETS)}", "one_of")
        guidance_name = str(spec.extra.get("guidance") or self.guidance)
        values = _guidance_set(self.config, guidance_name)
        note = None
        if preset == "fast" and not (self.distilled or self.distilled_lora):
            preset, note = "standard", "preset 'fast' needs distilled weights; ran 'standard'"
        elif preset == "standard" and self.distilled:
            preset, note = "fast", "a distilled checkpoint always runs the distilled schedule"
        two_stage = self.two_stage
        width, height = model_size(request.width, request.height, self.max_pixels, 64 if two_stage else 32)
        first_size = (width // 2, height // 2) if two_stage else (width, height)
        first_name = "stage1" if two_stage else "denoise"
        if preset == "fast":
            first = _distilled_stage(first_name, first_size, list(DISTILLED_SIGMA_VALUES))
        else:
            first = _guided_stage(first_name, first_size, self.steps, spec.cfg_scale, values)
        stages = [first]
        if two_stage:
            stages.append(_distilled_stage("stage2", (width, height), list(STAGE_2_DISTILLED_SIGMA_VALUES),
                                           noise_scale=STAGE_2_DISTILLED_SIGMA_VALUES[0]))
        mode = "flf" if request.tail_image is not None else ("i2v" if request.image is not None else "t2v")
        return {"preset": preset, "guidance": guidance_name, "note": note, "mode": mode, "two_stage": two_stage,
                "model_width": width, "model_height": height,
                "model_frames": frames_on_grid(request.num_frames, temporal_ratio), "stages": stages}

    def generate(self, request: EngineRequest, on_step: StepCallback = no_progress) -> EngineOutput:
        try:
            return self._generate_loaded(request, on_step)
        except Exception as exc:
            if not _is_cuda_oom(exc):
                raise
            detail = _first_line(exc)
            traceback.clear_frames(exc.__traceback__)  # frees the job's activations held by those frames
        self.release_memory()
        raise OutOfMemory(self._oom_message(f"generating {request.width}x{request.height}, "
                                            f"{request.num_frames} frames", detail))

    def _generate_loaded(self, request: EngineRequest, on_step: StepCallback) -> EngineOutput:
        import torch

        if not self._loaded:
            self._load()
        try:
            with torch.inference_mode():
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
        embeds = self._encode(pipe, spec.prompt, negative, any(s.guided for s in stages))

        total = sum(s.steps for s in stages)
        self._on_step, self._progress, self._stop = on_step, (0, total, stages[0].name), None
        video_latents = stage1_audio = None
        for index, stage in enumerate(stages):
            self._progress = (self._progress[0], total, stage.name)
            kwargs = self._stage_kwargs(plan, stage, request, embeds, generator)
            if video_latents is not None:
                kwargs.update(latents=video_latents, audio_latents=stage1_audio, noise_scale=stage.noise_scale)
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
            if index == 0:
                # Stage 2 refines the video only: its audio is re-noised and regenerated without
                # guidance, so the clip keeps stage 1's (as Lightricks' two-stage pipeline does).
                stage1_audio = audio_latents
            if index < len(stages) - 1:
                self._activate(self._upsample_pipe)
                video_latents = self._upsample_pipe(latents=video_latents, output_type="latent",
                                                    return_dict=False)[0]
        del audio_latents
        video = self._decode_video(pipe, video_latents, generator)
        audio_np, sample_rate = None, 48_000
        if spec.generate_audio:
            audio_np = self._decode_audio(pipe, stage1_audio)
            sample_rate = int(pipe.vocoder.config.output_sampling_rate)
        pipe.maybe_free_model_hooks()
        frames = _to_uint8(video[0])
        del video
        info = {k: plan[k] for k in ("preset", "guidance", "mode", "two_stage", "model_width", "model_height",
                                     "model_frames")}
        info.update(steps=[s.steps for s in stages], guidance_scales=[s.guidance for s in stages],
                    transformer_passes=[_passes_per_step(s) for s in stages],
                    seconds=round(time.perf_counter() - started, 3))
        if plan["note"]:
            info["note"] = plan["note"]
        return EngineOutput(frames=_to_output(frames, request.num_frames, request.width, request.height),
                            num_frames=request.num_frames, width=request.width, height=request.height,
                            fps=request.fps, audio=audio_np, sample_rate=sample_rate, info=info)

    def _stage_kwargs(self, plan: dict[str, Any], stage: _Stage, request: EngineRequest,
                      embeds: dict[str, Any], generator: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "prompt_embeds": embeds["prompt_embeds"],
            "prompt_attention_mask": embeds["prompt_attention_mask"],
            "width": stage.width, "height": stage.height, "num_frames": plan["model_frames"],
            "frame_rate": float(request.fps), "num_inference_steps": stage.steps, "sigmas": stage.sigmas,
            "guidance_scale": stage.guidance, "audio_guidance_scale": stage.audio_guidance,
            "stg_scale": stage.stg_scale, "audio_stg_scale": stage.stg_scale,
            "spatio_temporal_guidance_blocks": stage.stg_blocks if stage.stg_scale else None,
            "modality_scale": stage.modality_scale, "audio_modality_scale": stage.modality_scale,
            "guidance_rescale": stage.guidance_rescale, "audio_guidance_rescale": stage.guidance_rescale,
            "use_cross_timestep": self.use_cross_timestep, "generator": generator,
            "max_sequence_length": self.max_sequence_length,
        }
        if stage.guided:
            kwargs["negative_prompt_embeds"] = embeds["negative_prompt_embeds"]
            kwargs["negative_prompt_attention_mask"] = embeds["negative_prompt_attention_mask"]
        if "decode_timestep" in self.config:
            kwargs["decode_timestep"] = float(self.config["decode_timestep"])
            kwargs["decode_noise_scale"] = float(self.config.get("decode_noise_scale",
                                                                 self.config["decode_timestep"]))
        if plan["mode"] != "t2v":
            kwargs["conditions"] = self._conditions(request, (stage.width, stage.height))
        return kwargs

    def _conditions(self, request: EngineRequest, size: tuple[int, int]) -> list[Any]:
        """The input image on frame 0 and the tail on the last frame the user receives, each fitted
        to this stage's size (every stage re-encodes them at its own size)."""
        from clipforge.engines.ltx2_conditions import pixel_condition

        ratio = self._pipes["i2v"].vae_temporal_compression_ratio
        conditions = []
        if request.image is not None:
            conditions.append(pixel_condition(_fit(request.image, size), 0, self.image_crf, ratio))
        if request.tail_image is not None:
            conditions.append(pixel_condition(_fit(request.tail_image, size), request.num_frames - 1,
                                              self.image_crf, ratio))
        return conditions

    def _encode(self, pipe: Any, prompt: str, negative: str, need_negative: bool) -> dict[str, Any]:
        """Prompt embeddings, computed once per job and reused by both stages; the negative prompt's
        come from a small per-process cache (the same text every job, and Gemma is the costly part)."""
        pe, pm = self._run_text_encoder(pipe, prompt)
        ne = nm = None
        if need_negative:
            ne, nm = self._negative_embeds(pipe, negative)
        return {"prompt_embeds": pe, "prompt_attention_mask": pm, "negative_prompt_embeds": ne,
                "negative_prompt_attention_mask": nm}

    def _negative_embeds(self, pipe: Any, negative: str) -> tuple[Any, Any]:
        key = (negative, self.max_sequence_length, str(self.dtype))
        cached = self._negatives.get(key)
        if cached is None:
            ne, nm = self._run_text_encoder(pipe, negative)
            cached = (ne.to("cpu"), nm.to("cpu"))  # CPU: survives unload and holds no GPU memory
            self._negatives[key] = cached
            while len(self._negatives) > NEGATIVE_CACHE_SIZE:
                self._negatives.popitem(last=False)
        else:
            self._negatives.move_to_end(key)
        return cached[0].to(self.device), cached[1].to(self.device)

    def _run_text_encoder(self, pipe: Any, text: str) -> tuple[Any, Any]:
        """Gemma's stacked hidden states for one text (diffusers pads each text to max_sequence_length
        on its own, so a prompt and a negative prompt encode the same apart or together)."""
        text_pipe = self._text_pipe or pipe
        if self._text_pipe is None:
            self._activate(pipe)
        embeds, mask, _, _ = text_pipe.encode_prompt(
            prompt=text, do_classifier_free_guidance=False, max_sequence_length=self.max_sequence_length,
            device=self.text_device, dtype=self.dtype)
        return embeds.to(self.device), mask.to(self.device)

    def _set_distilled(self, pipe: Any, distilled: bool) -> None:
        if not self.distilled_lora:
            return
        if distilled:
            pipe.enable_lora()
            pipe.set_adapters(["distilled"], [1.0])
        else:
            pipe.disable_lora()
        pipe.transformer.requires_grad_(False)  # peft marks an activated adapter trainable

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
        video = vae.decode(latents.to(vae.dtype), timestep, return_dict=False)[0]
        return pipe.video_processor.postprocess_video(video, output_type="pt")

    @staticmethod
    def _decode_audio(pipe: Any, audio_latents: Any) -> np.ndarray:
        """Audio VAE -> mel spectrogram -> vocoder (in float32), as the pipeline does; float32
        (channels, samples)."""
        import torch

        mel = pipe.audio_vae.decode(audio_latents.to(pipe.audio_vae.dtype), return_dict=False)[0]
        audio = pipe.vocoder(mel.to(torch.float32))
        return audio[0].float().clamp(-1, 1).cpu().numpy()


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:240]


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
    nw, nh = _cover_size(image.size, size)
    image = image.resize((nw, nh), PILImage.Resampling.LANCZOS)
    left, top = (nw - w) // 2, (nh - h) // 2
    return image.crop((left, top, left + w, top + h))


def _cover_size(source: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """`source` scaled by one factor so that it covers `target` (the smaller factor that does)."""
    (sw, sh), (tw, th) = source, target
    scale = max(tw / sw, th / sh)
    return max(tw, round(sw * scale)), max(th, round(sh * scale))


def _to_output(frames: np.ndarray, count: int, width: int, height: int) -> Iterator[np.ndarray]:
    """The first `count` frames, each scaled by one factor to cover width x height and centre-cropped
    to it (lazily): the model's aspect may differ a little from the output's, and cropping that
    difference away keeps circles round where resizing each axis on its own would stretch them."""
    import cv2

    _, h, w, _ = frames.shape
    nw, nh = _cover_size((w, h), (width, height))
    interp = cv2.INTER_AREA if nw * nh < w * h else cv2.INTER_CUBIC
    left, top = (nw - width) // 2, (nh - height) // 2
    for i in range(min(count, frames.shape[0])):
        frame = frames[i]
        if (w, h) != (nw, nh):
            frame = cv2.resize(frame, (nw, nh), interpolation=interp)
        yield np.ascontiguousarray(frame[top:top + height, left:left + width])


def _passes_per_step(stage: _Stage) -> int:
    """Transformer work per denoising step, in batch-1 passes: CFG runs the conditional and the
    unconditional branch as one batch of 2; STG and modality isolation each add one pass."""
    if not stage.guided:
        return 1
    return 2 + (stage.stg_scale > 0.0) + (stage.modality_scale > 1.0)
