"""LTX-2 on one GPU through the real `ltx2` engine: seconds per step, peak memory, end-to-end seconds.

For `fast` and `standard`, t2v and i2v, at 768x512x121 and 1280x704x121 (5 s at 24 fps), it prints
the median seconds per denoising step of each stage, the peak reserved CUDA memory and the end-to-end
seconds of `LTX2Engine.generate` plus consuming every frame and the audio, next to the published
anchor: SGLang Diffusion, 1x H100, 768x512x121, 8 steps: 9.5 s.

Weights: `--checkpoint DIR` (a diffusers LTX-2 directory, e.g. `hf download Lightricks/LTX-2 --local-dir
DIR`; also found at $LTX2_CHECKPOINT) is loaded as a worker would load it. Without one, the real
LTX-2 19B configs (`clipforge.engines.ltx2_real`) are built randomly initialised in bfloat16 straight
on the GPU (about 64 GiB; timings do not depend on weight values; a word-level tokenizer stands in for
Gemma's and the prompt is padded to `max_sequence_length` as always). `fast` needs distilled weights:
random weights are run as a distilled checkpoint for it; with a real checkpoint pass `--distilled-lora
FILE` or `--distilled`, else `fast` is skipped.

`--toy` runs the same script on the CPU in seconds (the tiny LTX-2 of `ltx2_tiny` with a one-layer
transformer, 64x64, 2 steps): CI runs it so the script cannot rot; its timings mean nothing.

    .venv/bin/python bench/ltx2_gpu.py                       # random real-size weights on cuda
    .venv/bin/python bench/ltx2_gpu.py --checkpoint /models/ltx-2 --distilled-lora /models/lora.safetensors
    .venv/bin/python bench/ltx2_gpu.py --toy                 # CPU plumbing check
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ANCHOR = "SGLang Diffusion, 1x H100, 768x512x121, 8 steps: 9.5 s (published)"
SIZES = ((768, 512), (1280, 704))
PROMPT = "a robot dancing in the rain on a neon-lit street, the camera slowly pans, rain drops hiss"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=os.environ.get("LTX2_CHECKPOINT") or None,
                        help="diffusers LTX-2 directory [env LTX2_CHECKPOINT; default: random real-size weights]")
    parser.add_argument("--distilled-lora", type=Path, help="distilled LoRA file (enables `fast` on a base checkpoint)")
    parser.add_argument("--distilled", action="store_true", help="the checkpoint is the distilled one")
    parser.add_argument("--presets", default="fast,standard")
    parser.add_argument("--tasks", default="t2v,i2v")
    parser.add_argument("--sizes", default=",".join(f"{w}x{h}" for w, h in SIZES))
    parser.add_argument("--steps", type=int, default=40, help="stage-1 steps of `standard`")
    parser.add_argument("--offload", default="auto")
    parser.add_argument("--two-stage", choices=["auto", "true", "false"], default="auto")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed runs before each preset's first case (default 1 on CUDA, 0 on CPU)")
    parser.add_argument("--toy", action="store_true", help="CPU, tiny widths, one transformer layer, 64x64, 2 steps")
    parser.add_argument("--device", default=None, help="torch device (default: cuda; cpu with --toy)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- weights


def toy_checkpoint(root: Path) -> Path:
    """The tiny LTX-2 with its transformer cut to one layer, written as a diffusers directory, with a tiny
    distilled LoRA beside it."""
    from diffusers import LTX2Pipeline, LTX2VideoTransformer3DModel

    from clipforge.engines.ltx2_tiny import TINY_LORA_FILE, tiny_components, write_tiny_lora

    components = tiny_components()
    upsampler = components.pop("latent_upsampler")
    config = {k: v for k, v in components["transformer"].config.items() if not k.startswith("_")}
    components["transformer"] = LTX2VideoTransformer3DModel(**dict(config, num_layers=1))
    LTX2Pipeline(**components).save_pretrained(str(root), safe_serialization=True)
    upsampler.save_pretrained(str(root / "latent_upsampler"), safe_serialization=True)
    write_tiny_lora(components["transformer"], root / TINY_LORA_FILE, seed=0)  # two-stage needs distilled weights
    return root


def random_real_checkpoint(root: Path) -> Path:
    """A skeleton diffusers directory (configs only, no weights) for `redirect_loading`."""
    index = {"_class_name": "LTX2Pipeline", "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
             "tokenizer": ["transformers", "PreTrainedTokenizerFast"]}
    for name in ("vae", "audio_vae", "text_encoder", "connectors", "transformer", "vocoder"):
        index[name] = ["diffusers", "random"]
    for name in [*index, "latent_upsampler"]:
        if not name.startswith("_"):
            (root / name).mkdir(parents=True, exist_ok=True)
            (root / name / "config.json").write_text("{}")
    (root / "model_index.json").write_text(json.dumps(index))
    return root


@contextmanager
def redirect_loading(device: str) -> Iterator[None]:
    """While active, the engine's `from_pretrained` calls get real-size components built once with random
    bf16 weights on `device`: 64 GiB cannot be written to and read back from disk for a timing run."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel

    from clipforge.engines import ltx2_real
    from clipforge.engines.ltx2_conditions import PixelConditionPipeline
    from clipforge.engines.ltx2_tiny import _tokenizer

    built: dict[str, Any] = {}

    def components() -> dict[str, Any]:
        if not built:
            t0 = time.perf_counter()
            built.update(ltx2_real.build_real_components(device, torch.bfloat16))
            print(f"built random real-size weights on {device} in {time.perf_counter() - t0:.1f}s", flush=True)
        return built

    def pipeline(cls: Any, *args: Any, **kwargs: Any) -> Any:
        parts = {k: v for k, v in components().items() if k != "latent_upsampler"}
        scheduler = FlowMatchEulerDiscreteScheduler(
            use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05, base_image_seq_len=1024,
            max_image_seq_len=4096, shift_terminal=0.1)
        return PixelConditionPipeline(scheduler=scheduler, tokenizer=_tokenizer(1024), **parts)

    classes = (PixelConditionPipeline, LTX2LatentUpsamplerModel)
    saved = [cls.__dict__.get("from_pretrained") for cls in classes]
    PixelConditionPipeline.from_pretrained = classmethod(pipeline)
    LTX2LatentUpsamplerModel.from_pretrained = classmethod(lambda cls, *a, **k: components()["latent_upsampler"])
    try:
        yield
    finally:
        for cls, original in zip(classes, saved, strict=True):
            if original is None:
                del cls.from_pretrained
            else:
                cls.from_pretrained = original
        built.clear()


# ----------------------------------------------------------------------------- runs


def picture(width: int, height: int) -> Any:
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256], -1)
    return Image.fromarray(rgb.astype(np.uint8))


def timed_run(engine: Any, preset: str, task: str, width: int, height: int, device: str) -> dict[str, Any]:
    """One generate, every frame and the audio consumed; step times per stage from the progress callback."""
    import torch

    from clipforge.core.spec import GenerationSpec
    from clipforge.engines.base import EngineRequest

    image = picture(width, height) if task == "i2v" else None
    spec = GenerationSpec(prompt=PROMPT, seed=7, duration=5, image="input" if image else None,
                          extra={"preset": preset})
    request = EngineRequest(spec, width, height, image=image)
    marks: list[tuple[float, str]] = []
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    out = engine.generate(request, lambda step, total, stage: marks.append((time.perf_counter(), stage)))
    frames = sum(1 for _ in out.frames)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    per_stage: dict[str, list[float]] = {}
    for (t_prev, _), (t, stage) in zip(marks, marks[1:], strict=False):
        per_stage.setdefault(stage, []).append(t - t_prev)
    return {"preset": preset, "task": task, "size": f"{width}x{height}x121", "frames": frames,
            "audio": out.audio is not None, "steps": len(marks),
            "seconds_per_step": {s: round(statistics.median(v), 4) for s, v in per_stage.items()},
            "end_to_end_s": round(seconds, 3), "info": out.info,
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2) if cuda else None}


def engine_config(args: argparse.Namespace, root: Path, distilled: bool, device: str) -> dict[str, Any]:
    config: dict[str, Any] = {"path": str(root), "device": device, "offload": args.offload,
                              "two_stage": args.two_stage, "steps": args.steps, "distilled": distilled,
                              "max_pixels": 1280 * 720}
    if args.distilled_lora:
        config["distilled_lora"] = str(args.distilled_lora)
    if args.toy:
        from clipforge.engines.ltx2_tiny import TINY_LORA_FILE

        config.update(dtype="float32", max_pixels=64 * 64, max_sequence_length=32, steps=2)
        config.setdefault("distilled_lora", str(root / TINY_LORA_FILE))
    return config


def run_preset(args: argparse.Namespace, root: Path, preset: str, device: str) -> list[dict[str, Any]]:
    from clipforge.engines.ltx2 import LTX2Engine

    random_weights = args.checkpoint is None and not args.toy
    distilled = args.distilled or ((random_weights or args.toy) and preset == "fast")
    if preset == "fast" and not (distilled or args.distilled_lora):
        print("fast: skipped (needs --distilled-lora or --distilled with a real checkpoint)")
        return []
    engine = LTX2Engine(engine_config(args, root, distilled, device))
    t0 = time.perf_counter()
    engine.load()
    plan = getattr(engine, "memory_plan", None)
    print(f"{preset}: loaded in {time.perf_counter() - t0:.1f}s" + (f"; {plan.summary()}" if plan else ""),
          flush=True)
    sizes = [(64, 64)] if args.toy else [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    warmup = args.warmup if args.warmup is not None else (0 if device == "cpu" else 1)
    results = []
    try:
        for width, height in sizes:
            for task in args.tasks.split(","):
                for _ in range(warmup if not results else 0):
                    timed_run(engine, preset, task, width, height, device)
                result = timed_run(engine, preset, task, width, height, device)
                result["estimated_peak_gib"] = estimated_peak(engine, args, root, plan, result)
                print(row(result), flush=True)
                results.append(result)
    finally:
        engine.unload()
    return results


def estimated_peak(engine: Any, args: argparse.Namespace, root: Path, plan: Any, result: dict[str, Any]) -> Any:
    """What the memory planner predicts for this run (weights + the run's largest phase), in GiB: printed
    next to the measured peak so a GPU run checks the planner."""
    from clipforge.engines import ltx2_memory as mem

    info = result["info"]
    offload = plan.name if plan is not None else args.offload
    if offload not in mem.PLANS or "model_width" not in info:
        return None
    guidance = info.get("guidance_scales") or [1.0]
    work = mem.Workload(int(info["model_width"]), int(info["model_height"]), int(info.get("model_frames", 121)),
                        task=str(info.get("mode", result["task"])), two_stage=bool(info.get("two_stage")),
                        cfg=float(guidance[0]) > 1.0, vae_tiling=not args.toy,
                        seq_len=int(engine.config.get("max_sequence_length", 1024)))
    params = mem.checkpoint_params(root, root / "latent_upsampler")
    dtype = str(getattr(engine, "dtype", "bfloat16")).replace("torch.", "")
    est = mem.estimate(work, params, dtype, mem.lora_params(engine.config.get("distilled_lora")))
    return round(est.peaks[offload] / mem.GIB, 2)


def row(r: dict[str, Any]) -> str:
    per_step = ", ".join(f"{stage} {s:.3f}" for stage, s in r["seconds_per_step"].items())
    peak = f"{r['peak_reserved_gib']:6.1f}" if r["peak_reserved_gib"] is not None else "     -"
    est = f"{r['estimated_peak_gib']:6.1f}" if r.get("estimated_peak_gib") is not None else "     -"
    return (f"{r['preset']:9s} {r['task']:4s} {r['size']:14s} {r['steps']:4d} steps  s/step: {per_step:34s} "
            f"peak reserved GiB {peak} (planner {est})  end-to-end {r['end_to_end_s']:8.2f} s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    device = args.device or ("cpu" if args.toy else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("Error: no CUDA device (use --toy for the CPU plumbing check)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ltx2-gpu-") as tmp, ExitStack() as stack:
        if args.toy:
            root, weights = toy_checkpoint(Path(tmp) / "toy"), "toy"
        elif args.checkpoint is not None:
            root, weights = args.checkpoint, str(args.checkpoint)
        else:
            root, weights = random_real_checkpoint(Path(tmp) / "random-real"), "random real-size bf16"
            stack.enter_context(redirect_loading(device))
        name = torch.cuda.get_device_name(device) if device.startswith("cuda") else f"{device} (timings: plumbing only)"
        print(f"device: {name}; weights: {weights}")
        print(f"anchor: {ANCHOR}")
        results = []
        for preset in args.presets.split(","):
            results += run_preset(args, root, preset, device)
    if args.json:
        args.json.write_text(json.dumps({"device": name, "weights": weights, "anchor": ANCHOR,
                                         "results": results}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
