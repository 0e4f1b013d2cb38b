"""bench/ltx2_gpu.py at toy size on the CPU (one transformer layer, 64x64): the GPU script cannot rot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the ltx2 engine needs the models extra")
pytest.importorskip("diffusers", reason="the ltx2 engine needs the models extra")

BENCH = Path(__file__).resolve().parents[2] / "bench" / "ltx2_gpu.py"


def test_gpu_bench_runs_at_toy_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_ltx2_gpu", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = tmp_path / "gpu.json"
    assert bench.main(["--toy", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "anchor: SGLang Diffusion, 1x H100, 768x512x121, 8 steps: 9.5 s" in out
    results = json.loads(report.read_text())["results"]
    assert [(r["preset"], r["task"]) for r in results] == [("fast", "t2v"), ("fast", "i2v"),
                                                          ("standard", "t2v"), ("standard", "i2v")]
    for r in results:
        assert r["frames"] == 120 and r["audio"] and r["end_to_end_s"] > 0
        assert set(r["seconds_per_step"]) == {"stage1", "stage2"}
        assert all(s > 0 for s in r["seconds_per_step"].values())
        assert r["peak_reserved_gib"] is None  # no CUDA here
        assert r["estimated_peak_gib"] > 0  # the planner's prediction for the same job, printed next to it
        assert f"{r['preset']:9s} {r['task']:4s} 64x64x121" in out
    # fast: 8 distilled + 3 refine steps; standard: the toy's 2 steps + 3 refine steps
    assert [r["steps"] for r in results] == [11, 11, 5, 5]


def test_gpu_bench_random_weights_load_through_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a checkpoint the script builds the real configs with random weights and redirects the
    engine's loading to them; here the builder is swapped for the tiny components (same classes) so the
    redirect, the skeleton checkpoint and the restore run on the CPU."""
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel

    from clipforge.engines import ltx2_real
    from clipforge.engines.ltx2_conditions import PixelConditionPipeline
    from clipforge.engines.ltx2_tiny import tiny_components

    calls: list[tuple[str, object]] = []

    def tiny(device, dtype=None, num_layers=None, names=ltx2_real.COMPONENTS):
        calls.append((device, dtype))
        built = tiny_components()
        return {name: built[name] for name in names}

    monkeypatch.setattr(ltx2_real, "build_real_components", tiny)
    spec = importlib.util.spec_from_file_location("bench_ltx2_gpu", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = tmp_path / "gpu.json"
    before = PixelConditionPipeline.from_pretrained, LTX2LatentUpsamplerModel.from_pretrained
    args = ["--device", "cpu", "--sizes", "64x64", "--steps", "2", "--tasks", "t2v", "--warmup", "0",
            "--json", str(report)]
    assert bench.main(args) == 0
    data = json.loads(report.read_text())
    assert data["weights"] == "random real-size bf16"
    assert [(r["preset"], r["frames"]) for r in data["results"]] == [("fast", 120), ("standard", 120)]
    # built once, in bf16 on the asked device, and shared by both engine loads (fast: distilled, standard: not)
    assert calls == [("cpu", torch.bfloat16)]
    # loading is restored afterwards
    assert (PixelConditionPipeline.from_pretrained, LTX2LatentUpsamplerModel.from_pretrained) == before
