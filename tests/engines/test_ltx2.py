"""The ltx2 engine on a tiny random LTX-2 checkpoint, through diffusers' real loading and pipelines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="the ltx2 engine needs the models extra")
pytest.importorskip("diffusers", reason="the ltx2 engine needs the models extra")
from PIL import Image

from clipforge.core.errors import Cancelled
from clipforge.core.spec import GenerationSpec
from clipforge.engines.base import EngineRequest
from clipforge.engines.ltx2 import LTX2Engine, frames_on_grid, guidance_for, model_size
from clipforge.engines.ltx2_tiny import tiny_engine_config
from helpers import calls


def picture(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([x * 255 // width, y * 255 // height, rng.integers(0, 255, (height, width))], -1)
    return Image.fromarray(img.astype(np.uint8))


def request(mode: str = "t2v", width: int = 64, height: int = 36, **spec) -> EngineRequest:
    spec.setdefault("prompt", "a robot dancing in the rain")
    image = tail = None
    if mode in ("i2v", "flf"):
        spec["image"] = "inputs/x/image.png"
        image = picture(width, height, 1)
    if mode == "flf":
        spec["tail_image"] = "inputs/x/tail.png"
        tail = picture(width, height, 2)
    return EngineRequest(GenerationSpec(**spec), width, height, image=image, tail_image=tail)


def run(engine: LTX2Engine, req: EngineRequest, on_step=None):
    steps: list[tuple[int, int, str]] = []
    out = engine.generate(req, on_step or (lambda s, n, st: steps.append((s, n, st))))
    return out, list(out.frames), steps


# ----------------------------------------------------------------------------- request mapping


def test_frames_land_on_the_8k_plus_1_grid():
    assert frames_on_grid(120) == 121 and frames_on_grid(240) == 241 and frames_on_grid(121) == 121
    assert frames_on_grid(1) == 1 and frames_on_grid(9) == 9 and frames_on_grid(10) == 17
    assert [frames_on_grid(s * 24) for s in (4, 8, 12)] == [97, 193, 289]  # the OpenAI dialect's lengths


def test_model_size_keeps_aspect_divisible_and_within_budget():
    assert model_size(1920, 1080, 1280 * 720, 32) == (1248, 704)  # 720 is not a multiple of 32
    assert model_size(1920, 1080, 1280 * 720, 64) == (1280, 704)
    assert model_size(1920, 800, 1280 * 720, 64) == (1408, 576)  # 1.9 % to crop, not 6.5 %
    w, h = model_size(1080, 1920, 1280 * 720, 64)
    assert (w % 64, h % 64) == (0, 0) and w * h <= 1280 * 720 and h > w
    assert model_size(1080, 1080, 1280 * 720, 32) == (960, 960)
    assert model_size(300, 200, 1280 * 720, 32) == (288, 192)  # never more pixels than the output has
    assert model_size(64, 36, 64 * 64, 32) == (64, 32)


def test_cfg_scale_maps_half_to_the_recommended_guidance():
    assert guidance_for(0.5, 4.0) == 4.0
    assert guidance_for(0.0, 4.0) == 1.0
    assert guidance_for(1.0, 4.0) == 7.0
    assert guidance_for(0.25, 3.0) == 2.0


# ----------------------------------------------------------------------------- generation


@pytest.mark.parametrize("mode", ["t2v", "i2v", "flf"])
@pytest.mark.parametrize("stages", ["single", "two"])
def test_modes_give_exact_frames_size_and_vocoder_audio(mode, stages, engine, engine2):
    eng = engine if stages == "single" else engine2
    req = request(mode, 96 if mode != "t2v" else 64, 64 if mode != "t2v" else 36, seed=5)
    with calls(eng._pipes[mode].vocoder) as vocoder_calls:
        out, frames, _ = run(eng, req)
    assert out.num_frames == req.num_frames == 120 == len(frames)
    assert (out.width, out.height) == (req.width, req.height)
    assert all(f.shape == (req.height, req.width, 3) and f.dtype == np.uint8 for f in frames)
    assert np.std(np.stack(frames[:4]).astype(np.float32)) > 1.0  # decoded pictures, not a constant
    assert vocoder_calls[0] == 1
    vocoder = eng._pipes[mode].vocoder
    assert out.sample_rate == vocoder.config.output_sampling_rate == 24_000
    assert out.audio.dtype == np.float32 and out.audio.shape[0] == vocoder.config.out_channels == 2
    assert abs(out.audio.shape[1] / out.sample_rate - 121 / 24) < 0.05  # audio spans the generated clip
    assert np.abs(out.audio).max() > 0.01 and np.abs(out.audio).max() <= 1.0
    assert out.info["mode"] == mode and out.info["model_frames"] == 121
    assert out.info["two_stage"] is (stages == "two")


def test_no_audio_skips_audio_vae_and_vocoder(engine2):
    pipe = engine2._pipes["t2v"]
    with calls(pipe.vocoder) as vocoder_calls, calls(pipe.audio_vae.decoder) as audio_decodes:
        out, frames, _ = run(engine2, request(generate_audio=False, seed=5))
    assert out.audio is None
    assert vocoder_calls[0] == 0 and audio_decodes[0] == 0
    assert len(frames) == 120 and frames[0].shape == (36, 64, 3)
    # The video is the same as with audio: only the audio decode was skipped.
    _, with_audio, _ = run(engine2, request(generate_audio=True, seed=5))
    assert np.array_equal(np.stack(frames), np.stack(with_audio))


def test_seed_makes_it_deterministic(engine):
    _, a, _ = run(engine, request(seed=11))
    _, b, _ = run(engine, request(seed=11))
    _, c, _ = run(engine, request(seed=12))
    assert np.array_equal(np.stack(a), np.stack(b))
    assert not np.array_equal(np.stack(a), np.stack(c))


def test_progress_counts_every_step_of_both_stages(engine, engine2):
    _, _, steps = run(engine, request())
    assert [s for s, _, _ in steps] == [1, 2, 3, 4] and {n for _, n, _ in steps} == {4}
    from diffusers.pipelines.ltx2.utils import STAGE_2_DISTILLED_SIGMA_VALUES

    timesteps: list[float] = []
    handle = engine2._pipes["t2v"].transformer.register_forward_pre_hook(
        lambda m, args, kwargs: timesteps.append(float(kwargs["timestep"].flatten()[0])), with_kwargs=True)
    try:
        _, _, steps = run(engine2, request())
    finally:
        handle.remove()
    assert [s for s, _, _ in steps] == list(range(1, 8)) and {n for _, n, _ in steps} == {7}
    assert [st for _, _, st in steps] == ["stage1"] * 4 + ["stage2"] * 3
    np.testing.assert_allclose(timesteps[4:], [1000 * s for s in STAGE_2_DISTILLED_SIGMA_VALUES], rtol=1e-5)
    assert timesteps[0] == pytest.approx(1000.0)  # stage 1: the checkpoint's own (shifted) schedule


@pytest.mark.parametrize("cancel_at", [2, 6])
def test_cancel_from_on_step_stops_within_one_step(engine2, cancel_at):
    seen: list[int] = []

    def on_step(step: int, total: int, stage: str) -> None:
        seen.append(step)
        if step == cancel_at:
            raise Cancelled("Cancelled by request")

    transformer = engine2._pipes["t2v"].transformer
    pipe = engine2._pipes["t2v"]
    with calls(transformer) as forwards, calls(pipe.vocoder) as vocoder_calls, calls(pipe.vae.decoder) as decodes:
        with pytest.raises(Cancelled):
            engine2.generate(request(), on_step)
    assert seen == list(range(1, cancel_at + 1))
    assert forwards[0] == cancel_at  # one transformer call per step (CFG is batched), none after
    assert vocoder_calls[0] == 0 and decodes[0] == 0  # and nothing is decoded for a cancelled job
    # The engine is usable again afterwards.
    _, frames, steps = run(engine2, request())
    assert len(frames) == 120 and steps[-1][:2] == (7, 7)


def test_cfg_zero_runs_without_negative_branch(engine):
    transformer = engine._pipes["t2v"].transformer
    batch: list[int] = []
    handle = transformer.register_forward_pre_hook(
        lambda m, args, kwargs: batch.append(kwargs["hidden_states"].shape[0]), with_kwargs=True)
    try:
        run(engine, request(cfg_scale=0.0))
        run(engine, request(cfg_scale=0.5))
    finally:
        handle.remove()
    assert batch == [1] * 4 + [2] * 4  # guidance 1.0 -> no CFG; 0.5 -> recommended CFG, batched


def test_fast_preset_uses_distilled_sigmas(tiny_ltx2):
    from diffusers.pipelines.ltx2.utils import DISTILLED_SIGMA_VALUES, STAGE_2_DISTILLED_SIGMA_VALUES

    eng = LTX2Engine(tiny_engine_config(tiny_ltx2, two_stage=True, preset="fast", distilled=True))
    eng.load()
    timesteps: list[float] = []
    handle = eng._pipes["t2v"].transformer.register_forward_pre_hook(
        lambda m, args, kwargs: timesteps.append(float(kwargs["timestep"].flatten()[0])), with_kwargs=True)
    try:
        out, frames, steps = run(eng, request(seed=3))
    finally:
        handle.remove()
    expected = [1000 * s for s in DISTILLED_SIGMA_VALUES + STAGE_2_DISTILLED_SIGMA_VALUES]
    np.testing.assert_allclose(timesteps, expected, rtol=1e-5)  # the distilled sigmas, unshifted
    assert out.info["preset"] == "fast" and out.info["steps"] == [8, 3]
    assert out.info["guidance_scales"] == [1.0, 1.0] and out.info["transformer_passes"] == [1, 1]
    assert len(frames) == 120 and steps[-1][:2] == (11, 11)
    eng.unload()


def test_text_encoder_on_its_own_device_gives_the_same_clip(tiny_ltx2, engine):
    # "cpu:0" is a different torch.device from "cpu": this takes the split path (Gemma outside the
    # pipelines, embeddings moved over), as text_encoder_device = "cpu" does next to a CUDA pipeline.
    eng = LTX2Engine(tiny_engine_config(tiny_ltx2, two_stage=False, text_encoder_device="cpu:0", guidance="cheap"))
    eng.load()
    assert eng._pipes["t2v"].text_encoder is None and eng._text_pipe is not None
    out, frames, _ = run(eng, request(seed=4))
    _, reference, _ = run(engine, request(seed=4))
    assert np.array_equal(np.stack(frames), np.stack(reference))
    eng.unload()


def test_load_per_job_unloads_after_each_generation(tiny_ltx2):
    eng = LTX2Engine(tiny_engine_config(tiny_ltx2, two_stage=False, resident=False))
    eng.load()
    assert not eng._loaded
    out, frames, _ = run(eng, request(seed=1))
    assert len(frames) == 120 and out.audio is not None and not eng._loaded


# ----------------------------------------------------------------------------- readiness


def test_missing_weights_dir_is_not_ready_with_the_path(tmp_path):
    missing = tmp_path / "no-such-weights"
    ready = LTX2Engine.readiness({"path": str(missing)})
    assert not ready.ready and str(missing) in ready.reason


def test_dir_without_model_index_is_not_ready(tmp_path):
    ready = LTX2Engine.readiness({"path": str(tmp_path)})
    assert not ready.ready and "model_index.json" in ready.reason and str(tmp_path) in ready.reason


def test_uncached_hub_repo_is_not_ready_and_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ready = LTX2Engine.readiness({"path": "Lightricks/LTX-2", "cache_dir": str(tmp_path)})
    assert not ready.ready and "Lightricks/LTX-2" in ready.reason and "cache" in ready.reason
    assert list(tmp_path.iterdir()) == []


def test_tiny_checkpoint_is_ready_and_fast_needs_distilled(tiny_ltx2, tmp_path):
    assert LTX2Engine.readiness({"path": str(tiny_ltx2)}).ready
    fast = LTX2Engine.readiness({"path": str(tiny_ltx2), "preset": "fast"})
    assert not fast.ready and "distilled" in fast.reason
    no_up = LTX2Engine.readiness({"path": str(tiny_ltx2), "two_stage": True, "upsampler": str(tmp_path)})
    assert not no_up.ready and str(tmp_path) in no_up.reason


def test_readiness_imports_no_torch(tmp_path):
    code = ("import sys; from clipforge.engines.ltx2 import LTX2Engine; "
            f"r = LTX2Engine.readiness({{'path': {str(tmp_path / 'x')!r}}}); "
            "assert not r.ready; assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, "
            "sorted(m for m in sys.modules if 'torch' in m)[:5]")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)


def test_engine_output_equals_a_bare_diffusers_call_with_the_reference_guidance(tiny_ltx2):
    """Same seed, same settings: the engine's frames and audio are the pipeline's own output, with
    LTX-2.0's reference guidance (video CFG 3, audio CFG 7, STG 1, modality 3, rescale 0.7; the tiny
    transformer has 2 blocks, so STG perturbs block 1 instead of 29)."""
    import torch
    from diffusers import LTX2Pipeline
    from diffusers.pipelines.ltx2.utils import DEFAULT_NEGATIVE_PROMPT

    eng = LTX2Engine(tiny_engine_config(tiny_ltx2, two_stage=False, stg_blocks=[1]))
    eng.load()
    pipe = LTX2Pipeline.from_pretrained(str(tiny_ltx2), dtype=torch.float32, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    video, audio = pipe(
        prompt="a cat on the street", negative_prompt=DEFAULT_NEGATIVE_PROMPT, width=64, height=64,
        num_frames=121, frame_rate=24.0, num_inference_steps=4, guidance_scale=3.0, audio_guidance_scale=7.0,
        stg_scale=1.0, audio_stg_scale=1.0, modality_scale=3.0, audio_modality_scale=3.0, guidance_rescale=0.7,
        audio_guidance_rescale=0.7, spatio_temporal_guidance_blocks=[1], use_cross_timestep=False,
        max_sequence_length=32, generator=torch.Generator().manual_seed(9), output_type="pt", return_dict=False)
    bare = (video[0] * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()[:120]
    out, frames, _ = run(eng, request(width=64, height=64, prompt="a cat on the street", seed=9))
    assert out.info["guidance"] == "reference" and out.info["transformer_passes"] == [4]
    assert np.array_equal(np.stack(frames), bare)
    assert np.array_equal(out.audio, audio[0].numpy())
    eng.unload()


def test_selftest_reports_ok(tiny_ltx2, tmp_path):
    from clipforge.engines.ltx2_tiny import selftest

    (tmp_path / "tiny-ltx2").symlink_to(tiny_ltx2)  # reuse the session's checkpoint instead of rebuilding
    report = selftest(tmp_path)
    assert report["ok"], report
    assert report["checks"]["t2v"]["frames"] == 120 and report["checks"]["worker"]["frames"] == 120
    assert (tmp_path / "selftest.json").is_file()


def test_ten_seconds_is_241_model_frames_trimmed_to_240(engine2):
    out, frames, _ = run(engine2, request(duration=10, seed=2))
    assert out.info["model_frames"] == 241 and len(frames) == out.num_frames == 240
    assert abs(out.audio.shape[1] / out.sample_rate - 241 / 24) < 0.05
