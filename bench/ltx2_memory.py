"""LTX-2 19B memory on paper: parameter counts at real size, and the offload plan `auto` picks per GPU.

Builds every component from the real configs (`clipforge.engines.ltx2_real`) on the meta device (no
memory, no download), prints its parameter count next to the published one (diffusers' conversion
script, as `REAL_PARAMS`), then the estimate and the plan `offload = "auto"` picks for 24, 48, 80
and 141 GB cards at 5 s and 10 s (1280x704, the engine's default `max_pixels`), for t2v and i2v,
one-stage and two-stage, without and with the distilled LoRA.

With `--measure`, it also runs the transformer (one block: activations are freed block by block),
the video VAE decode and the latent upsampler on the meta device under a live-tensor tracker and
prints the peak next to the planner's activation model (`clipforge.engines.ltx2_memory`).

    .venv/bin/python bench/ltx2_memory.py [--measure] [--no-build]
"""

from __future__ import annotations

import argparse
import sys
import time
import weakref
from typing import Any

from clipforge.engines import ltx2_memory as mem
from clipforge.engines.ltx2_real import COMPONENTS, DISTILLED_LORA_PARAMS, REAL_PARAMS

CARDS_MIB = {24: 24564, 48: 46068, 80: 81559, 141: 143771}
"""Total memory nvidia-smi reports for a 24 GB (RTX 4090), 48 GB (L40S), 80 GB (H100) and 141 GB (H200) card."""
CONTEXT_MIB = 500  # what the CUDA context takes before the engine loads


def card_free_bytes(gb: int) -> int:
    return (CARDS_MIB[gb] - CONTEXT_MIB) * 2**20


class LiveTensors:
    """Peak bytes of live tensor storages created inside the context (a TorchDispatchMode): every op's
    outputs are counted once per storage, and freed when the last tensor viewing that storage dies.
    Works on the meta device, where nothing is allocated."""

    def __new__(cls) -> Any:
        from torch.utils._python_dispatch import TorchDispatchMode

        class _Mode(TorchDispatchMode):
            def __init__(self) -> None:
                super().__init__()
                self.refs: dict[int, list[int]] = {}
                self.live = self.peak = 0

            def _drop(self, key: int) -> None:
                entry = self.refs[key]
                entry[0] -= 1
                if entry[0] == 0:
                    self.live -= entry[1]
                    del self.refs[key]

            def _track(self, t: Any) -> None:
                import torch

                if not isinstance(t, torch.Tensor) or getattr(t, "_live_tracked", False):
                    return
                t._live_tracked = True
                storage = t.untyped_storage()
                key = storage._cdata
                entry = self.refs.get(key)
                if entry is None:
                    entry = self.refs[key] = [0, storage.nbytes()]
                    self.live += entry[1]
                entry[0] += 1
                weakref.finalize(t, self._drop, key)

            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                out = func(*args, **(kwargs or {}))
                for t in out if isinstance(out, (tuple, list)) else (out,):
                    self._track(t)
                self.peak = max(self.peak, self.live)
                return out

        return _Mode()


def _flash_like_sdpa(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
    """SDPA's output without the tokens x tokens matrix the meta fallback would build (CUDA uses flash /
    memory-efficient kernels)."""
    return query.new_empty(query.shape[:-1] + (value.shape[-1],))


def measure_transformer_pass(width: int, height: int, frames: int, rows: int, per_token_timestep: bool,
                             num_layers: int = 1, seq_len: int = 1024) -> int:
    """Peak activation bytes of one real-width transformer forward (bf16, meta device)."""
    import torch
    import torch.nn.functional as F

    from clipforge.engines.ltx2_real import build_real_components

    model = build_real_components("meta", torch.bfloat16, num_layers=num_layers, names=("transformer",))
    model = model["transformer"]
    lf, h, w = (frames - 1) // 8 + 1, height // 32, width // 32
    n, na = lf * h * w, max(1, round((frames - 1) / 24 * 25))

    def empty(*shape: int, dtype: Any = torch.bfloat16) -> Any:
        return torch.empty(*shape, device="meta", dtype=dtype)

    timestep = empty(rows, n, dtype=torch.float32) if per_token_timestep else empty(rows, dtype=torch.float32)
    original, F.scaled_dot_product_attention = F.scaled_dot_product_attention, _flash_like_sdpa
    try:
        with torch.inference_mode(), LiveTensors() as tracker:
            text = empty(rows, seq_len, 3840)
            model(hidden_states=empty(rows, n, 128), audio_hidden_states=empty(rows, na, 128),
                  encoder_hidden_states=text, audio_encoder_hidden_states=text,
                  timestep=timestep, audio_timestep=empty(rows, dtype=torch.float32),
                  encoder_attention_mask=empty(rows, seq_len), audio_encoder_attention_mask=empty(rows, seq_len),
                  num_frames=lf, height=h, width=w, fps=24.0, audio_num_frames=na, return_dict=False)
    finally:
        F.scaled_dot_product_attention = original
    return tracker.peak


def measure_vae_decode(width: int, height: int, frames: int, tiled: bool) -> int:
    import torch

    from clipforge.engines.ltx2_real import build_real_components

    vae = build_real_components("meta", torch.bfloat16, names=("vae",))["vae"]
    if tiled:
        vae.enable_tiling()
    z = torch.empty(1, 128, (frames - 1) // 8 + 1, height // 32, width // 32, device="meta", dtype=torch.bfloat16)
    with torch.inference_mode(), LiveTensors() as tracker:
        vae.decode(z, None, return_dict=False)
    return tracker.peak


def measure_gemma(seq_len: int = 1024) -> int:
    """One prompt's Gemma pass with all hidden states, stacked as diffusers' LTX-2 encode does."""
    import torch
    import transformers.masking_utils as masking

    from clipforge.engines.ltx2_real import build_real_components

    te = build_real_components("meta", torch.bfloat16, names=("text_encoder",))["text_encoder"]
    ids = torch.zeros(1, seq_len, dtype=torch.long, device="meta")
    original = masking._ignore_causal_mask_sdpa  # it asks a meta tensor for a value
    masking._ignore_causal_mask_sdpa = lambda *args, **kwargs: False
    try:
        with torch.inference_mode(), LiveTensors() as tracker:
            out = te(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
            torch.stack(out.hidden_states, dim=-1)
    finally:
        masking._ignore_causal_mask_sdpa = original
    return tracker.peak


def measure_connectors(seq_len: int = 1024, rows: int = 2) -> int:
    """The text connectors on `rows` stacked prompts (their input included)."""
    import torch
    import torch.nn.functional as F

    from clipforge.engines.ltx2_real import CONNECTORS, build_real_components

    conn = build_real_components("meta", torch.bfloat16, names=("connectors",))["connectors"]
    width = CONNECTORS["caption_channels"] * CONNECTORS["text_proj_in_factor"]
    original, F.scaled_dot_product_attention = F.scaled_dot_product_attention, _flash_like_sdpa
    try:
        with torch.inference_mode(), LiveTensors() as tracker:
            x = torch.empty(rows, seq_len, width, device="meta", dtype=torch.bfloat16).clone()
            conn(x, torch.ones(rows, seq_len, device="meta", dtype=torch.long), padding_side="left")
    finally:
        F.scaled_dot_product_attention = original
    return tracker.peak


def print_counts() -> bool:
    import torch

    from clipforge.engines.ltx2_real import build_real_components, count_params

    print("Parameters at real size (meta device, diffusers classes) vs the published table")
    print(f"{'component':18s} {'built':>16s} {'table':>16s} {'bf16 GiB':>9s}  match")
    ok, total = True, 0
    for name in COMPONENTS:
        t0 = time.perf_counter()
        n = count_params(build_real_components("meta", torch.bfloat16, names=(name,))[name])
        total += n
        ok = ok and n == REAL_PARAMS[name]
        print(f"{name:18s} {n:16,d} {REAL_PARAMS[name]:16,d} {n * 2 / mem.GIB:9.1f}  "
              f"{'yes' if n == REAL_PARAMS[name] else 'NO'}  ({time.perf_counter() - t0:.1f}s)")
    print(f"{'total':18s} {total:16,d} {sum(REAL_PARAMS.values()):16,d} {total * 2 / mem.GIB:9.1f}")
    print(f"{'distilled LoRA':18s} {'':16s} {DISTILLED_LORA_PARAMS:16,d} {DISTILLED_LORA_PARAMS * 2 / mem.GIB:9.1f}"
          "  (about; counted from the file when configured)")
    return ok


def print_plans() -> None:
    print("\nPlan `offload = \"auto\"` picks (worst job at that duration; 1280x704; peaks in GiB; "
          f"fits if peak x {1 + mem.MARGIN:.2f} + {mem.RESERVE / mem.GIB:.1f} GiB <= free)")
    head = "  ".join(f"{g:>3d} GB" + " " * 11 for g in CARDS_MIB)
    print(f"{'job':42s} {'none':>5s} {'te-cpu':>6s} {'model':>5s} {'seq':>5s}  {head}")
    for seconds in (5, 10):
        for two_stage in (False, True):
            for task in ("t2v", "i2v"):
                for lora in (0, DISTILLED_LORA_PARAMS):
                    work = mem.Workload(1280, 704, seconds * 24 + 1, task=task, two_stage=two_stage)
                    est = mem.estimate(work, lora_params=lora)
                    peaks = " ".join(f"{est.peaks[p] / mem.GIB:5.1f}" for p in mem.PLANS).replace(" ", "  ", 1)
                    picks = "  ".join(f"{mem.choose_plan(est, card_free_bytes(g)).name:17s}" for g in CARDS_MIB)
                    label = f"{seconds:2d}s {task} {'2-stage' if two_stage else '1-stage'}{' +LoRA' if lora else ''}"
                    print(f"{label:42s} {peaks}  {picks}")


def print_measured() -> None:
    print("\nActivation peaks: meta-device tracker vs the planner's model (GiB, bf16)")
    cases = [("transformer 768x512x121 t2v CFG", lambda: measure_transformer_pass(768, 512, 121, 2, False),
              mem.transformer_pass_bytes(mem.video_tokens(768, 512, 121), 2, False)),
             ("transformer 1280x704x121 t2v CFG", lambda: measure_transformer_pass(1280, 704, 121, 2, False),
              mem.transformer_pass_bytes(mem.video_tokens(1280, 704, 121), 2, False)),
             ("transformer 1280x704x121 i2v CFG", lambda: measure_transformer_pass(1280, 704, 121, 2, True),
              mem.transformer_pass_bytes(mem.video_tokens(1280, 704, 121), 2, True)),
             ("transformer 1280x704x241 i2v CFG", lambda: measure_transformer_pass(1280, 704, 241, 2, True),
              mem.transformer_pass_bytes(mem.video_tokens(1280, 704, 241), 2, True)),
             ("gemma 1024 tokens, one prompt", measure_gemma, mem.gemma_bytes(1024, cfg=False)),
             ("connectors 1024 tokens, 2 rows", measure_connectors, mem.connector_bytes(1024, 2)),
             ("vae decode 1280x704x121 untiled", lambda: measure_vae_decode(1280, 704, 121, False),
              mem.vae_decode_bytes(1280, 704, 121, False)),
             ("vae decode 1280x704x241 tiled", lambda: measure_vae_decode(1280, 704, 241, True),
              mem.vae_decode_bytes(1280, 704, 241, True))]
    for label, measure, model in cases:
        measured = measure()
        print(f"{label:36s} tracker {measured / mem.GIB:6.2f}  model {model / mem.GIB:6.2f}  "
              f"({(model - measured) / measured:+.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", action="store_true", help="also run the live-tensor tracker (about a minute)")
    parser.add_argument("--no-build", action="store_true", help="skip building the components (plans only)")
    args = parser.parse_args()
    ok = True
    if not args.no_build:
        ok = print_counts()
    print_plans()
    if args.measure:
        print_measured()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
