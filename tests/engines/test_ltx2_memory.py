"""The ltx2 memory plan: real-size parameter counts, the activation model, and `offload = "auto"` per GPU.

Device memory is faked (`ltx2_memory.device_free_bytes`); checkpoints at real size are faked with
safetensors files that hold only a header (the planner reads headers, never weights).
"""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from clipforge.cli import main
from clipforge.engines import ltx2_memory as mem
from clipforge.engines.ltx2 import LTX2Engine
from clipforge.engines.ltx2_real import COMPONENTS, REAL_PARAMS

torch = pytest.importorskip("torch", reason="building modules needs the models extra")
pytest.importorskip("diffusers", reason="building modules needs the models extra")

BENCH = Path(__file__).resolve().parents[2] / "bench" / "ltx2_memory.py"
CARD_MIB = {24: 24564, 48: 46068, 80: 81559, 141: 143771}  # nvidia-smi totals: 4090, L40S, H100, H200


def card(gb: int) -> int:
    return (CARD_MIB[gb] - 500) * 2**20  # less the CUDA context


def bench_module():
    spec = importlib.util.spec_from_file_location("bench_ltx2_memory", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def header_only_safetensors(path: Path, params: int, dtype: str = "BF16") -> None:
    header = json.dumps({"weight": {"dtype": dtype, "shape": [params], "data_offsets": [0, 2 * params]}}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header)


@pytest.fixture(scope="module")
def real_size_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A diffusers LTX-2 layout whose safetensors headers declare the real 19B parameter counts."""
    root = tmp_path_factory.mktemp("ltx2-real") / "LTX-2"
    index = {"_class_name": "LTX2Pipeline", "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
             "tokenizer": ["transformers", "GemmaTokenizerFast"]}
    for name in COMPONENTS:
        folder = root / name
        if name != "latent_upsampler":
            index[name] = ["diffusers", "X"]
        # split in two shards, as the hub checkpoint is sharded
        header_only_safetensors(folder / "part-00001.safetensors", REAL_PARAMS[name] // 2)
        header_only_safetensors(folder / "part-00002.safetensors", REAL_PARAMS[name] - REAL_PARAMS[name] // 2)
        (folder / "config.json").write_text("{}")
    for name in ("scheduler", "tokenizer"):
        (root / name).mkdir()
    (root / "model_index.json").write_text(json.dumps(index))
    return root


def fake_gpu(monkeypatch: pytest.MonkeyPatch, gb: int) -> None:
    monkeypatch.setattr(mem, "device_free_bytes", lambda device: card(gb))


# ----------------------------------------------------------------------------- parameters


def test_real_configs_build_to_the_published_parameter_counts() -> None:
    from clipforge.engines.ltx2_real import build_real_components, count_params

    small = tuple(n for n in COMPONENTS if n != "transformer")
    built = build_real_components("meta", torch.bfloat16, names=small)
    assert {n: count_params(m) for n, m in built.items()} == {n: REAL_PARAMS[n] for n in small}
    # the 48-block transformer: count 1 and 2 blocks, extrapolate (each block has the same shape)
    one, two = (count_params(build_real_components("meta", torch.bfloat16, num_layers=k,
                                                   names=("transformer",))["transformer"]) for k in (1, 2))
    assert one + 47 * (two - one) == REAL_PARAMS["transformer"] == 18_876_174_592
    assert sum(REAL_PARAMS.values()) == 34_339_401_637


def test_checkpoint_params_come_from_the_safetensors_headers(tiny_ltx2: Path, real_size_checkpoint: Path) -> None:
    from clipforge.engines.ltx2_tiny import tiny_components

    components = tiny_components()
    counted = mem.checkpoint_params(tiny_ltx2, tiny_ltx2 / "latent_upsampler")
    for name in COMPONENTS:
        state = components[name].state_dict()
        unique = {t.data_ptr(): t.numel() for t in state.values()}
        assert counted[name] == sum(unique.values()), name
    assert mem.checkpoint_params(real_size_checkpoint, real_size_checkpoint / "latent_upsampler") == REAL_PARAMS


# ----------------------------------------------------------------------------- activations


@pytest.mark.parametrize("per_token_timestep", [False, True], ids=["t2v", "i2v"])
def test_activation_model_matches_the_live_tensor_tracker(per_token_timestep: bool) -> None:
    measured = bench_module().measure_transformer_pass(768, 512, 49, rows=2, per_token_timestep=per_token_timestep)
    model = mem.transformer_pass_bytes(mem.video_tokens(768, 512, 49), 2, per_token_timestep)
    assert abs(model - measured) / measured < 0.10


def test_text_encoder_and_connector_model_match_the_tracker() -> None:
    bench = bench_module()
    measured = bench.measure_gemma(256), bench.measure_connectors(256, rows=2)
    model = mem.gemma_bytes(256, cfg=False), mem.connector_bytes(256, 2)
    for m, t in zip(model, measured, strict=True):
        assert abs(m - t) / t < 0.10


def test_image_conditioning_roughly_doubles_the_transformer_activations() -> None:
    t2v, i2v = (mem.estimate(mem.Workload(1280, 704, 121, task=task)) for task in ("t2v", "i2v"))
    denoise = {e.workload.task: next(p for p in e.phases if p.name == "denoise").activation for e in (t2v, i2v)}
    assert 2.0 < denoise["i2v"] / denoise["t2v"] < 2.5
    # 10 s has twice the latent frames (31 vs 16): about twice the activations
    ten = mem.estimate(mem.Workload(1280, 704, 241, task="i2v"))
    assert 1.8 < next(p for p in ten.phases if p.name == "denoise").activation / denoise["i2v"] < 2.0


def test_weights_are_dtype_aware() -> None:
    work = mem.Workload(768, 512, 121)
    bf16, fp32 = mem.estimate(work, dtype="bfloat16"), mem.estimate(work, dtype="float32")
    assert bf16.weights["transformer"] == 2 * REAL_PARAMS["transformer"]
    assert fp32.weights["transformer"] == 4 * REAL_PARAMS["transformer"]
    assert bf16.weights["vocoder"] == 4 * REAL_PARAMS["vocoder"]  # the vocoder runs in fp32
    assert round(bf16.total_weights / mem.GIB, 1) == 64.1
    lora = mem.estimate(work, lora_params=3_700_000_000)
    assert lora.peaks["none"] - bf16.peaks["none"] == 2 * 3_700_000_000
    fp32_te = mem.estimate(work, text_encoder_dtype="float32")
    assert fp32_te.weights["text_encoder"] == 4 * REAL_PARAMS["text_encoder"]


# ----------------------------------------------------------------------------- choosing a plan


@pytest.mark.parametrize(("gb", "config", "plan"), [
    (141, {}, "none"),
    (80, {}, "none"),
    (48, {"max_pixels": 768 * 512}, "model"),
    (48, {}, "sequential"),
    (24, {}, "sequential"),
    (24, {"max_pixels": 768 * 512}, "sequential"),
])
def test_auto_picks_the_cheapest_plan_that_fits(monkeypatch: pytest.MonkeyPatch, real_size_checkpoint: Path,
                                                gb: int, config: dict, plan: str) -> None:
    fake_gpu(monkeypatch, gb)
    ready = LTX2Engine.readiness({"path": str(real_size_checkpoint), "device": "cuda", **config})
    assert ready.ready, ready.reason
    assert ready.detail.endswith(f"offload plan '{plan}'")
    assert "weights 64.1 GiB" in ready.detail


def test_distilled_lora_moves_an_80_gb_card_to_the_cpu_text_encoder(real_size_checkpoint: Path,
                                                                   tmp_path: Path) -> None:
    lora = tmp_path / "ltx-2-19b-distilled-lora-384.safetensors"
    header_only_safetensors(lora, 3_700_000_000)
    config = {"path": str(real_size_checkpoint), "distilled_lora": str(lora)}
    root = real_size_checkpoint
    with_lora = mem.plan_for(config, root, root / "latent_upsampler", card(80))
    assert with_lora.estimate.lora == 2 * 3_700_000_000
    assert with_lora.name == "text_encoder_cpu" and with_lora.offload == "none" and with_lora.text_encoder_on_cpu
    assert mem.plan_for(config, root, root / "latent_upsampler", card(141)).name == "none"


def test_a_configured_cpu_text_encoder_is_not_counted_on_the_gpu(real_size_checkpoint: Path) -> None:
    root, up = real_size_checkpoint, real_size_checkpoint / "latent_upsampler"
    config = {"path": str(root), "text_encoder_device": "cpu"}
    plan = mem.plan_for(config, root, up, card(48))
    assert plan.estimate.weights["text_encoder"] == 0
    assert plan.estimate.peaks["none"] == plan.estimate.peaks["text_encoder_cpu"]


def test_ten_seconds_needs_more_than_five() -> None:
    est5, est10 = (mem.estimate(mem.Workload(1280, 704, s * 24 + 1, task="i2v")) for s in (5, 10))
    assert mem.choose_plan(est5, card(80)).name == "none"
    assert mem.choose_plan(est10, card(80)).name == "text_encoder_cpu"
    assert mem.choose_plan(est10, None).name == "none"  # no CUDA: nothing to offload to


def test_plans_are_cheapest_first_and_sequential_is_the_floor() -> None:
    est = mem.estimate(mem.Workload(1280, 704, 241, task="i2v"))
    peaks = [est.peaks[p] for p in mem.PLANS]
    assert peaks == sorted(peaks, reverse=True)
    assert mem.choose_plan(est, 4 * mem.GIB).name == "sequential"


def test_engine_load_applies_the_plan(monkeypatch: pytest.MonkeyPatch, tiny_ltx2: Path) -> None:
    """At load, `auto` estimates from the checkpoint on disk and the device's free memory."""
    from clipforge.engines.ltx2_tiny import tiny_engine_config

    config = tiny_engine_config(tiny_ltx2, two_stage=False)
    assert "offload" not in config  # the default is "auto"
    est = mem.plan_for(config, tiny_ltx2, None, None).estimate
    assert est.weights["transformer"] == 4 * mem.checkpoint_params(tiny_ltx2)["transformer"]  # float32 on CPU
    free = int(est.peaks["model"] * (1 + mem.MARGIN) + mem.RESERVE) + 1
    assert not mem.fits(est.peaks["text_encoder_cpu"], free)
    seen: list[str] = []
    monkeypatch.setattr(mem, "device_free_bytes", lambda device: seen.append(device) or free)
    engine = LTX2Engine(config)
    engine.load()
    try:
        assert seen and set(seen) == {"cpu"}  # readiness and load both ask the device
        assert engine.memory_plan.name == "model"
        assert engine.memory_plan.estimate.workload.frames == 241  # planned for the longest job
    finally:
        engine.unload()


def test_models_verbose_prints_the_estimate_and_plan(monkeypatch: pytest.MonkeyPatch, real_size_checkpoint: Path,
                                                     tmp_path: Path) -> None:
    fake_gpu(monkeypatch, 80)
    toml = tmp_path / "models.toml"
    toml.write_text(f'[models."ltx-2"]\ntask = "any"\nengines = ["ltx2"]\n\n'
                    f'[engines.ltx2]\npath = "{real_size_checkpoint}"\n')
    result = CliRunner().invoke(main, ["models", "--models-config", str(toml), "--verbose"])
    assert result.exit_code == 0, result.output
    assert "ltx2       ready" in result.output
    assert "memory: weights 64.1 GiB (transformer 35.2, text_encoder 22.7" in result.output
    assert "79.2 GiB free -> offload plan 'none'" in result.output
    quiet = CliRunner().invoke(main, ["models", "--models-config", str(toml)])
    assert "memory:" not in quiet.output


def test_a_failing_estimate_never_makes_the_engine_unready(monkeypatch: pytest.MonkeyPatch,
                                                            real_size_checkpoint: Path) -> None:
    def broken(*args, **kwargs):
        raise ValueError("bad header")

    monkeypatch.setattr(mem, "plan_for", broken)
    ready = LTX2Engine.readiness({"path": str(real_size_checkpoint), "offload": "model"})
    assert ready.ready
    assert ready.detail == ("memory: no estimate (ValueError: bad header) (not used: offload = 'model' is "
                            "configured)")
    assert ready.as_dict() == {"ready": True, "reason": None, "limits": {}, "detail": ready.detail}
