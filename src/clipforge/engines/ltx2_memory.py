"""The ltx2 engine's memory plan: how much accelerator memory each offload mode needs, and which to use.

`offload = "auto"` (the default) asks `choose_plan` for the cheapest plan whose estimated peak fits
the device's free memory, in the order: `none` (everything resident), `text_encoder_cpu` (Gemma on
the CPU, the rest resident), `model` (diffusers' model CPU offload: one component on the device at
a time), `sequential` (diffusers' sequential offload: one layer at a time). Nothing here loads
weights or imports torch, except `device_free_bytes` (which asks the driver).

The estimate (`estimate`) is weights + activations, per phase of a job:
- weights: parameters per component x the bytes of the dtype it is loaded in. The parameters come
  from the checkpoint's safetensors headers (`checkpoint_params`, reads a few KB per file) or, without
  a checkpoint, from the real LTX-2 19B configs (`ltx2_real.REAL_PARAMS`); the distilled LoRA's from
  its file, else about 3.7 B.
- activations: the peak of live tensors while a phase runs, from a linear model per phase fitted to
  a live-tensor tracker that ran diffusers 0.42.1's real-size modules on the meta device
  (`bench/ltx2_memory.py --measure` re-measures and prints model vs tracker):
  transformer pass: rows x (bytes per video token x video tokens + a constant), rows = 2 with CFG
  (diffusers batches cond + uncond; STG and modality passes run one row at a time after it, so they
  add no peak); i2v and first + last frame use per-token timesteps, whose modulation tensors make
  a token 2.27x as costly as in t2v. Attention is assumed memory-efficient (flash / SDPA kernels, no
  tokens x tokens matrix), as diffusers uses on CUDA. VAE decode: bytes per output pixel-frame,
  untiled; tiled, one 512x512 tile over all frames plus the output. Gemma: one prompt's forward with
  its 49 hidden states stacked, while the other prompt's stack is kept. Connectors: per token and
  row (prompt + negative), dominated by their float32 normalisation of the stacked states (4.7 GiB
  at 1024 tokens with CFG: more than a 5 s t2v transformer pass). Audio decode: an allowance per
  second (not measured; under 1 % of the total).
- a fit needs `peak x (1 + MARGIN) + RESERVE` <= free memory: allocator fragmentation, cuBLAS
  workspaces and the CUDA context are not modelled, so a margin stands for them.
What is not modelled: torch.compile's extra buffers, other processes on the GPU (free memory is read
at load time, so they count then), CPU RAM (the offload modes need the offloaded weights in RAM).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipforge.engines.ltx2_real import COMPONENTS, DISTILLED_LORA_PARAMS, GEMMA_TEXT, REAL_PARAMS

GIB = 1024**3
PLANS = ("none", "text_encoder_cpu", "model", "sequential")
"""Cheapest first: each later plan moves more bytes over PCIe per job."""

MARGIN = 0.05
RESERVE = int(1.5 * GIB)

# Activation model, bf16 bytes (fitted to the meta-device tracker; see the module docstring).
T2V_BYTES_PER_TOKEN = 147_900
I2V_BYTES_PER_TOKEN = 336_200
PASS_CONSTANT = 30_000_000
VAE_BYTES_PER_PIXEL_FRAME = 85.2
VAE_TILE_BYTES_PER_PIXEL_FRAME = 80.7
VAE_TILED_OUTPUT_BYTES_PER_PIXEL_FRAME = 3.13
VAE_TILE = 512
GEMMA_BYTES_PER_TOKEN = 1_670_000  # one prompt's pass, its 49 hidden states stacked (1.59 GiB at 1024)
STACKED_BYTES_PER_TOKEN = (GEMMA_TEXT["num_hidden_layers"] + 1) * GEMMA_TEXT["hidden_size"] * 2  # what it keeps
CONNECTOR_BYTES_PER_TOKEN = 2_446_000  # per token and row (prompt + negative = 2 rows): fp32 normalisation
UPSAMPLER_BYTES_PER_VOXEL = 32_800  # per half-size latent voxel
AUDIO_BYTES_PER_SECOND = 50_000_000  # allowance, not measured
LARGEST_LEAF_PARAMS = GEMMA_TEXT["vocab_size"] * GEMMA_TEXT["hidden_size"]  # Gemma's token embedding

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "fp32": 4, "fp16": 2, "bf16": 2,
               "F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I8": 1, "U8": 1, "BOOL": 1,
               "F8_E4M3": 1, "F8_E5M2": 1}


@dataclass(frozen=True)
class Workload:
    """The largest job the plan must hold: model size (full, the last stage's), frames on LTX's grid."""

    width: int
    height: int
    frames: int
    task: str = "t2v"  # t2v | i2v | flf
    two_stage: bool = False
    cfg: bool = True  # the first (or only) stage runs with classifier-free guidance
    vae_tiling: bool = True
    seq_len: int = 1024
    fps: int = 24

    @property
    def seconds(self) -> float:
        return (self.frames - 1) / self.fps

    def describe(self) -> str:
        stages = "two-stage" if self.two_stage else "one stage"
        return f"{self.width}x{self.height}x{self.frames} {self.task}, {stages}{', CFG' if self.cfg else ''}"


@dataclass(frozen=True)
class Phase:
    name: str
    components: tuple[str, ...]
    activation: int


@dataclass
class Estimate:
    """Bytes on the accelerator: weights per component (LoRA under `lora`), and the phases of a job."""

    weights: dict[str, int]
    phases: list[Phase]
    lora: int = 0
    leaf: int = 0  # the largest single module (sequential offload holds one at a time)
    workload: Workload | None = None
    peaks: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.peaks = {plan: self._peak(plan) for plan in PLANS}

    def _weights(self, names: tuple[str, ...]) -> int:
        extra = self.lora if "transformer" in names else 0
        return sum(self.weights.get(n, 0) for n in names) + extra

    def _peak(self, plan: str) -> int:
        if plan == "none":
            return self._weights(COMPONENTS) + max(p.activation for p in self.phases)
        if plan == "text_encoder_cpu":
            gpu = tuple(c for c in COMPONENTS if c != "text_encoder")
            return self._weights(gpu) + max(p.activation for p in self.phases if p.name != "encode")
        if plan == "model":
            return max(self._weights(p.components) + p.activation for p in self.phases)
        # sequential: one leaf at a time, the latent upsampler stays resident (the engine keeps it so)
        return self.leaf + self.weights.get("latent_upsampler", 0) + max(p.activation for p in self.phases)

    @property
    def total_weights(self) -> int:
        return self._weights(COMPONENTS)


@dataclass(frozen=True)
class Plan:
    """The chosen offload plan and why."""

    name: str
    free: int | None
    estimate: Estimate

    @property
    def offload(self) -> str:
        """The engine's `offload` value for this plan."""
        return "none" if self.name == "text_encoder_cpu" else self.name

    @property
    def text_encoder_on_cpu(self) -> bool:
        return self.name == "text_encoder_cpu"

    def summary(self) -> str:
        e = self.estimate
        parts = ", ".join(f"{k} {_gib(v)}" for k, v in e.weights.items() if v)
        lora = f", distilled LoRA {_gib(e.lora)}" if e.lora else ""
        peaks = ", ".join(f"{k} {_gib(v)}" for k, v in e.peaks.items())
        free = f"{_gib(self.free)} GiB free" if self.free is not None else "no CUDA device"
        work = f" for {e.workload.describe()}" if e.workload else ""
        return (f"memory: weights {_gib(e.total_weights)} GiB ({parts}{lora}); peak{work}: {peaks} GiB; "
                f"{free} -> offload plan '{self.name}'")


def _gib(n: int | None) -> str:
    return f"{(n or 0) / GIB:.1f}"


def fits(peak: int, free: int) -> bool:
    return peak * (1 + MARGIN) + RESERVE <= free


def choose_plan(estimate: Estimate, free: int | None) -> Plan:
    """The first of PLANS whose peak fits `free` bytes; `sequential` when none does; `none` without a
    device to offload from (free is None: CPU)."""
    if free is None:
        return Plan("none", None, estimate)
    for name in PLANS:
        if fits(estimate.peaks[name], free):
            return Plan(name, free, estimate)
    return Plan("sequential", free, estimate)


# ----------------------------------------------------------------------------- activations


def transformer_pass_bytes(tokens: int, rows: int, per_token_timestep: bool, scale: float = 1.0) -> int:
    per_token = I2V_BYTES_PER_TOKEN if per_token_timestep else T2V_BYTES_PER_TOKEN
    return int(rows * (per_token * tokens + PASS_CONSTANT) * scale)


def video_tokens(width: int, height: int, frames: int) -> int:
    return ((frames - 1) // 8 + 1) * (height // 32) * (width // 32)


def vae_decode_bytes(width: int, height: int, frames: int, tiled: bool, scale: float = 1.0) -> int:
    untiled = VAE_BYTES_PER_PIXEL_FRAME * width * height * frames
    if not tiled:
        return int(untiled * scale)
    tile = VAE_TILE_BYTES_PER_PIXEL_FRAME * min(width, VAE_TILE) * min(height, VAE_TILE) * frames
    out = VAE_TILED_OUTPUT_BYTES_PER_PIXEL_FRAME * width * height * frames
    return int(min(untiled, tile + out) * scale)


def gemma_bytes(seq_len: int, cfg: bool, scale: float = 1.0) -> int:
    """Prompt and negative prompt are encoded one after the other: the second pass runs while the first
    one's stacked hidden states are kept."""
    kept = STACKED_BYTES_PER_TOKEN * seq_len if cfg else 0
    return int((GEMMA_BYTES_PER_TOKEN * seq_len + kept) * scale)


def connector_bytes(seq_len: int, rows: int, scale: float = 1.0) -> int:
    """The connectors take the stacked hidden states of all rows at once (the input is in the figure)."""
    return int(rows * seq_len * CONNECTOR_BYTES_PER_TOKEN * scale)


def phases(work: Workload, scale: float = 1.0) -> list[Phase]:
    """The phases of one job with their activation peaks (bytes); `scale` = activation dtype bytes / 2."""
    per_token_t = work.task in ("i2v", "flf")
    rows = 2 if work.cfg else 1
    full = video_tokens(work.width, work.height, work.frames)
    if work.task == "flf":  # room for one appended keyframe latent frame (reference-style conditioning)
        full += (work.height // 32) * (work.width // 32)
    out = [Phase("encode", ("text_encoder",), gemma_bytes(work.seq_len, work.cfg, scale)),
           Phase("connectors", ("connectors",), connector_bytes(work.seq_len, rows, scale))]
    if work.two_stage:
        half = max(1, full // 4)
        out.append(Phase("stage1", ("transformer",), transformer_pass_bytes(half, rows, per_token_t, scale)))
        voxels = ((work.frames - 1) // 8 + 1) * (work.height // 64) * (work.width // 64)
        out.append(Phase("upsample", ("latent_upsampler",), int(UPSAMPLER_BYTES_PER_VOXEL * voxels * scale)))
        out.append(Phase("stage2", ("transformer",), transformer_pass_bytes(full, 1, per_token_t, scale)))
    else:
        out.append(Phase("denoise", ("transformer",), transformer_pass_bytes(full, rows, per_token_t, scale)))
    out.append(Phase("decode", ("vae",), vae_decode_bytes(work.width, work.height, work.frames, work.vae_tiling,
                                                           scale)))
    out.append(Phase("audio", ("audio_vae", "vocoder"), int(AUDIO_BYTES_PER_SECOND * max(1.0, work.seconds))))
    return out


# ----------------------------------------------------------------------------- weights


def weight_bytes(params: Mapping[str, int], dtype: str, text_encoder_dtype: str | None = None,
                 fp32: tuple[str, ...] = ("vocoder",)) -> dict[str, int]:
    """Bytes per component when loaded in `dtype` (`fp32` components stay in float32)."""
    size = DTYPE_BYTES.get(dtype, 2)
    out = {}
    for name in COMPONENTS:
        n = params.get(name, 0)
        if name in fp32:
            out[name] = n * 4
        elif name == "text_encoder" and text_encoder_dtype:
            out[name] = n * DTYPE_BYTES.get(text_encoder_dtype, 2)
        else:
            out[name] = n * size
    return out


def estimate(work: Workload, params: Mapping[str, int] | None = None, dtype: str = "bfloat16",
             lora_params: int = 0, text_encoder_dtype: str | None = None) -> Estimate:
    """Weights + per-phase activations for `work`; `params` default to the real 19B checkpoint's."""
    params = dict(REAL_PARAMS if params is None else params)
    scale = DTYPE_BYTES.get(dtype, 2) / 2
    weights = weight_bytes(params, dtype, text_encoder_dtype)
    # a smaller checkpoint's largest module is smaller than the real Gemma embedding: cap by its weights
    leaf = min(LARGEST_LEAF_PARAMS * DTYPE_BYTES.get(text_encoder_dtype or dtype, 2), max(weights.values()))
    return Estimate(weights, phases(work, scale), lora=lora_params * DTYPE_BYTES.get(dtype, 2), leaf=leaf,
                    workload=work)


def safetensors_params(path: Path) -> int:
    """Parameters in one .safetensors file, from its header alone."""
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")


def checkpoint_params(root: Path, upsampler: Path | None = None) -> dict[str, int]:
    """Parameters per component of a diffusers LTX-2 directory (safetensors headers); a component
    without safetensors files (or unreadable) gets the real 19B checkpoint's count."""
    out = {}
    for name in COMPONENTS:
        folder = upsampler if name == "latent_upsampler" and upsampler is not None else root / name
        try:
            files = sorted(Path(folder).glob("*.safetensors"))
            out[name] = sum(safetensors_params(f) for f in files) if files else REAL_PARAMS[name]
        except (OSError, ValueError, KeyError, struct.error):
            out[name] = REAL_PARAMS[name]
    return out


def lora_params(path: str | None) -> int:
    if not path:
        return 0
    try:
        return safetensors_params(Path(path).expanduser())
    except (OSError, ValueError, KeyError, struct.error):
        return DISTILLED_LORA_PARAMS


# ----------------------------------------------------------------------------- the engine's view


def worst_workload(config: Mapping[str, Any], two_stage: bool, on_cuda: bool = True,
                   seconds: int = 10) -> Workload:
    """The largest job an engine with `config` accepts: `max_pixels` at 16:9, `seconds` long, image-
    conditioned (the costlier task), with CFG unless the checkpoint is distilled."""
    max_pixels = int(config.get("max_pixels", 1280 * 720))
    multiple = 64 if two_stage else 32
    width = max(multiple, int(math.sqrt(max_pixels * 16 / 9)) // multiple * multiple)
    height = max(multiple, int(max_pixels / width) // multiple * multiple)
    frames = seconds * 24 + 1
    return Workload(width, height, frames, task="i2v", two_stage=two_stage,
                    cfg=not bool(config.get("distilled", False)),
                    vae_tiling=bool(config.get("vae_tiling", on_cuda)),
                    seq_len=int(config.get("max_sequence_length", 1024)))


def device_free_bytes(device: str) -> int | None:
    """Free memory of a CUDA device as the driver reports it, or None (CPU, no CUDA)."""
    if device == "cpu" or device.startswith("cpu:"):
        return None
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    target = torch.device("cuda" if device == "auto" else device)
    free, _total = torch.cuda.mem_get_info(target)
    return int(free)


def dtype_name(config: Mapping[str, Any], key: str = "dtype", on_cuda: bool = True) -> str:
    name = str(config.get(key) or "auto").replace("torch.", "")
    if name == "auto":
        return "bfloat16" if on_cuda else "float32"
    return {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32",
            "float": "float32"}.get(name, name)


def plan_for(config: Mapping[str, Any], root: Path | None, upsampler: Path | None,
             free: int | None) -> Plan:
    """The memory plan of an `[engines.ltx2]` config: estimate from the checkpoint, fit to `free`."""
    on_cuda = free is not None
    params = checkpoint_params(root, upsampler) if root is not None else dict(REAL_PARAMS)
    two_stage = upsampler is not None and str(config.get("two_stage", "auto")).lower() not in ("false", "off")
    if upsampler is None:
        params["latent_upsampler"] = 0
    if str(config.get("text_encoder_device") or "").startswith("cpu"):  # Gemma is configured off the GPU
        params["text_encoder"] = 0
    dtype = dtype_name(config, on_cuda=on_cuda)
    te_dtype = dtype_name(config, "text_encoder_dtype", on_cuda) if config.get("text_encoder_dtype") else None
    work = worst_workload(config, two_stage, on_cuda)
    est = estimate(work, params, dtype, lora_params(config.get("distilled_lora")), te_dtype)
    return choose_plan(est, free)
