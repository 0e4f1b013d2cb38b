"""The ltx2 engine against Lightricks' reference pipelines and a real GPU's constraints, at tiny scale:
no autograd, two-stage only with distilled weights, stage-2 image conditioning at full size, the tail
on the last output frame, stage-1 audio, guidance sets, no stretching, clean failures, the cached
negative prompt."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="the ltx2 engine needs the models extra")
pytest.importorskip("diffusers", reason="the ltx2 engine needs the models extra")
import torch
from PIL import Image, ImageDraw

from clipforge.core.errors import OutOfMemory
from clipforge.core.spec import GenerationSpec
from clipforge.engines import ltx2
from clipforge.engines.base import EngineRequest
from clipforge.engines.ltx2 import DISTILLED_LORA_FILE, LTX2Engine, model_size
from clipforge.engines.ltx2_conditions import PixelConditionPipeline
from clipforge.engines.ltx2_tiny import tiny_engine_config
from helpers import calls

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ltx2.md"


def request(mode: str = "t2v", width: int = 64, height: int = 36, **spec) -> EngineRequest:
    spec.setdefault("prompt", "a robot dancing in the rain")
    rng = np.random.default_rng(1)
    image = tail = None
    if mode in ("i2v", "flf"):
        spec["image"] = "inputs/x/image.png"
        image = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    if mode == "flf":
        spec["tail_image"] = "inputs/x/tail.png"
        tail = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    return EngineRequest(GenerationSpec(**spec), width, height, image=image, tail_image=tail)


def run(engine: LTX2Engine, req: EngineRequest):
    steps: list[tuple[int, int, str]] = []
    out = engine.generate(req, lambda s, n, st: steps.append((s, n, st)))
    return out, list(out.frames), steps


def loaded(tiny_ltx2: Path, **overrides) -> LTX2Engine:
    eng = LTX2Engine(tiny_engine_config(tiny_ltx2, **overrides))
    eng.load()
    return eng


def disk(width: int, height: int, radius: int) -> Image.Image:
    """A white disk centred on black: its bounding box shows any stretch."""
    img = Image.new("RGB", (width, height))
    cx, cy = width // 2, height // 2
    ImageDraw.Draw(img).ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(255, 255, 255))
    return img


def disk_extent(frame: np.ndarray) -> tuple[int, int]:
    """(width, height) of the bright blob."""
    bright = frame.mean(axis=-1) > 127
    cols, rows = np.flatnonzero(bright.any(axis=0)), np.flatnonzero(bright.any(axis=1))
    return int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


class Recorder:
    """Wraps a pipeline class's __call__ to record each call's kwargs and returned latents."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, cls: type) -> None:
        self.calls: list[dict] = []
        self.outputs: list[tuple] = []
        original = cls.__call__

        def wrapper(pipe, *args, **kwargs):
            self.calls.append(kwargs)
            result = original(pipe, *args, **kwargs)
            self.outputs.append(result)
            return result

        monkeypatch.setattr(cls, "__call__", wrapper)


# ----------------------------------------------------------------------------- 1. no autograd


def test_no_parameter_requires_grad_and_generation_runs_in_inference_mode(engine2):
    seen: dict[str, list] = {"embeds": [], "inference": []}
    pipe = engine2._pipes["t2v"]
    h1 = pipe.connectors.register_forward_pre_hook(lambda m, args: seen["embeds"].append(args[0]))
    h2 = pipe.transformer.register_forward_pre_hook(
        lambda m, args: seen["inference"].append(torch.is_inference_mode_enabled()))
    try:
        run(engine2, request(seed=1))  # two stages: the distilled LoRA is switched on and off
    finally:
        h1.remove()
        h2.remove()
    modules = engine2._modules()
    params = [p for m in modules for p in m.parameters()]
    assert len(modules) >= 7 and len(params) > 100
    assert not any(p.requires_grad for p in params)
    assert any("lora" in name for m in modules for name, _ in m.named_parameters())  # LoRA params included
    assert seen["embeds"] and all(not e.requires_grad and e.is_inference() for e in seen["embeds"])
    assert seen["inference"] and all(seen["inference"])


# ----------------------------------------------------------------------------- 2. two-stage gating


def test_two_stage_true_without_distilled_weights_is_not_ready_naming_the_lora(tiny_ltx2):
    ready = LTX2Engine.readiness({"path": str(tiny_ltx2), "two_stage": True})
    assert not ready.ready and DISTILLED_LORA_FILE in ready.reason and "distilled = true" in ready.reason
    assert LTX2Engine.readiness({"path": str(tiny_ltx2), "two_stage": True, "distilled": True}).ready


def test_two_stage_auto_falls_back_to_one_stage_without_distilled_weights(tiny_ltx2):
    eng = loaded(tiny_ltx2, two_stage="auto", distilled_lora=None, guidance="cheap")
    assert not eng.two_stage and eng._upsample_pipe is None
    out, frames, steps = run(eng, request(seed=1))
    assert out.info["two_stage"] is False and [st for *_, st in steps] == ["denoise"] * 4 and len(frames) == 120
    eng.unload()
    assert loaded(tiny_ltx2, two_stage="auto").two_stage  # with the (tiny) distilled LoRA: two stages


def test_distilled_checkpoint_always_runs_the_distilled_schedule(tiny_ltx2):
    from diffusers.pipelines.ltx2.utils import DISTILLED_SIGMA_VALUES

    eng = loaded(tiny_ltx2, distilled=True, distilled_lora=None, preset="standard", steps=40)
    timesteps, batches = [], []

    def record(module, args, kwargs) -> None:
        timesteps.append(float(kwargs["timestep"].flatten()[0]))
        batches.append(kwargs["hidden_states"].shape[0])

    handle = eng._pipes["t2v"].transformer.register_forward_pre_hook(record, with_kwargs=True)
    try:
        out, _, _ = run(eng, request(seed=2, cfg_scale=0.5))
    finally:
        handle.remove()
    np.testing.assert_allclose(timesteps, [1000 * s for s in DISTILLED_SIGMA_VALUES], rtol=1e-5)
    assert batches == [1] * len(DISTILLED_SIGMA_VALUES)  # no CFG
    assert out.info["preset"] == "fast" and "distilled" in out.info["note"]
    eng.unload()


def test_docs_download_list_includes_the_distilled_lora():
    text = DOCS.read_text()
    download_command = text[text.index("## 2."):].split("```sh")[1].split("```")[0]
    assert "hf download Lightricks/LTX-2" in download_command and DISTILLED_LORA_FILE in download_command


# ----------------------------------------------------------------------------- 3. stage-2 image at full size


def test_stage_two_conditions_on_the_input_re_encoded_at_full_size(engine2, monkeypatch):
    req = request("i2v", 96, 64, seed=3)
    recorder = Recorder(monkeypatch, PixelConditionPipeline)
    _, reference, _ = run(engine2, req)
    sizes = [call["conditions"][0].frames.size for call in recorder.calls]
    assert sizes == [(32, 32), (64, 64)]  # stage 1 at half size, stage 2 at full size

    fit = ltx2._fit

    def other_full_size_image(image, size):
        return Image.new("RGB", size, (200, 30, 30)) if size == (64, 64) else fit(image, size)

    monkeypatch.setattr(ltx2, "_fit", other_full_size_image)
    _, changed, _ = run(engine2, req)
    assert not np.array_equal(np.stack(reference[:8]), np.stack(changed[:8]))


# ----------------------------------------------------------------------------- 4. tail on the last output frame


@pytest.mark.parametrize("duration", [5, 10])
def test_tail_keyframe_sits_on_the_last_frame_the_user_receives(engine, duration):
    coords: list = []
    handle = engine._pipes["flf"].transformer.register_forward_pre_hook(
        lambda m, args, kwargs: coords.append(kwargs["video_coords"]), with_kwargs=True)
    try:
        out, frames, _ = run(engine, request("flf", 96, 64, seed=4, duration=duration))
    finally:
        handle.remove()
    last = out.num_frames - 1
    assert len(frames) == out.num_frames == 24 * duration and last == (119 if duration == 5 else 239)
    latent_frames = (out.info["model_frames"] - 1) // 8 + 1
    base_tokens = latent_frames * (64 // 32) * (64 // 32)
    video_coords = coords[0][0]  # [3, tokens, 2] of the first batch row: (frame, y, x) x (start, end)
    keyframe = video_coords[0, base_tokens:]  # the appended tail tokens' time, in seconds
    assert keyframe.shape[0] == 4
    torch.testing.assert_close(keyframe[:, 0], torch.full((4,), last / 24.0))
    torch.testing.assert_close(keyframe[:, 1], torch.full((4,), (last + 1) / 24.0))
    # The first image still replaces latent frame 0 (no extra tokens for it).
    assert video_coords.shape[1] == base_tokens + 4


def test_docs_place_the_tail_on_the_last_frame():
    text = DOCS.read_text()
    assert "the last image pins the last latent frame" not in text
    assert "on the last frame the user receives: frame 119 of 0..119 for 5 s, 239 for 10 s" in text


# ----------------------------------------------------------------------------- 5. audio from stage 1


def test_audio_is_decoded_from_stage_one_latents_by_an_fp32_vocoder(engine2, monkeypatch):
    from diffusers import LTX2Pipeline

    recorder = Recorder(monkeypatch, LTX2Pipeline)
    pipe = engine2._pipes["t2v"]
    decoded, vocoder_inputs = [], []
    decode = pipe.audio_vae.decode
    monkeypatch.setattr(pipe.audio_vae, "decode", lambda z, **kw: (decoded.append(z.clone()), decode(z, **kw))[1])
    handle = pipe.vocoder.register_forward_pre_hook(lambda m, args: vocoder_inputs.append(args[0].dtype))
    try:
        run(engine2, request(seed=6))
    finally:
        handle.remove()
    (_, stage1_audio), (_, stage2_audio) = recorder.outputs
    assert len(decoded) == 1 and torch.equal(decoded[0], stage1_audio)
    assert not torch.equal(stage1_audio, stage2_audio)
    assert torch.equal(recorder.calls[1]["audio_latents"], stage1_audio)  # stage 2 still hears it
    assert vocoder_inputs == [torch.float32]


def test_vocoder_weights_stay_fp32_when_the_rest_is_bf16(tiny_ltx2):
    eng = loaded(tiny_ltx2, dtype="bfloat16")
    pipe = eng._pipes["t2v"]
    assert pipe.transformer.dtype == torch.bfloat16 and pipe.vocoder.dtype == torch.float32
    eng.unload()


# ----------------------------------------------------------------------------- 6. guidance sets


def test_guidance_sets_choose_passes_and_reference_is_the_default(tiny_ltx2):
    assert LTX2Engine({"path": "x"}).guidance == "reference"
    eng = loaded(tiny_ltx2, stg_blocks=[1], steps=2)
    batches: list[int] = []
    handle = eng._pipes["t2v"].transformer.register_forward_pre_hook(
        lambda m, args, kwargs: batches.append(kwargs["hidden_states"].shape[0]), with_kwargs=True)
    try:
        reference, _, _ = run(eng, request(seed=7))
        cheap, _, _ = run(eng, request(seed=7, extra={"guidance": "cheap"}))
        off, _, _ = run(eng, request(seed=7, cfg_scale=0.0))
    finally:
        handle.remove()
    # reference: CFG batch of 2 + STG + modality per step; cheap: CFG only; cfg_scale 0: nothing.
    assert batches == [2, 1, 1] * 2 + [2] * 2 + [1] * 2
    assert [r.info["transformer_passes"] for r in (reference, cheap, off)] == [[4], [2], [1]]
    assert reference.info["guidance_scales"] == [3.0] and reference.info["guidance"] == "reference"
    plan = eng.plan(request(seed=7))["stages"][0]
    assert (plan.guidance, plan.audio_guidance, plan.stg_scale, plan.stg_blocks, plan.modality_scale,
            plan.guidance_rescale) == (3.0, 7.0, 1.0, [1], 3.0, 0.7)
    assert ltx2.GUIDANCE_SETS["reference"]["stg_blocks"] == [29]
    with pytest.raises(Exception, match="guidance"):
        eng.plan(request(extra={"guidance": "lavish"}))
    eng.unload()


# ----------------------------------------------------------------------------- 7. no stretching


@pytest.mark.parametrize(("out_size", "multiple"), [((1920, 1080), 32), ((1920, 1080), 64), ((1920, 800), 64)])
def test_model_frames_reach_the_output_by_one_scale_and_a_crop(out_size, multiple):
    size = model_size(*out_size, 1280 * 720, multiple)
    frame = np.asarray(disk(*size, radius=size[1] // 3))[None]
    (out,) = list(ltx2._to_output(frame, 1, *out_size))
    assert out.shape == (out_size[1], out_size[0], 3)
    w, h = disk_extent(out)
    assert abs(w - h) <= 2, (size, w, h)  # a circle stays a circle (stretching made it 2.3-6.5 % wider)


def test_i2v_first_frame_keeps_the_input_aspect(engine, monkeypatch):
    """Input -> model-size condition -> output, with a decoder that returns the condition image: the
    disk in the input comes out round, at the exact output size."""
    recorder = Recorder(monkeypatch, PixelConditionPipeline)

    def decode_condition(pipe, latents, generator):
        image = np.asarray(recorder.calls[-1]["conditions"][0].frames, dtype=np.float32) / 255.0
        frames = torch.from_numpy(image).permute(2, 0, 1)[None].repeat(121, 1, 1, 1)
        return frames[None]

    monkeypatch.setattr(engine, "_decode_video", decode_condition)
    width, height = 150, 60  # 2.5:1; the tiny model runs at 96x32 (3:1)
    req = EngineRequest(GenerationSpec(prompt="a cat", image="x", seed=1), width, height,
                        image=disk(width, height, radius=20))
    out, frames, _ = run(engine, req)
    assert (out.info["model_width"], out.info["model_height"]) == (96, 32)
    condition = np.asarray(recorder.calls[-1]["conditions"][0].frames)
    cw, ch = disk_extent(condition)
    assert abs(cw - ch) <= 1
    assert frames[0].shape == (height, width, 3)
    w, h = disk_extent(frames[0])
    assert abs(w - h) <= 2, (w, h)


# ----------------------------------------------------------------------------- 8. clean failures


def fake_oom(*args, **kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


@pytest.mark.parametrize("error", [torch.OutOfMemoryError, RuntimeError])
def test_a_failed_load_releases_everything_it_loaded(tiny_ltx2, monkeypatch, error):
    held: list[weakref.ref] = []

    def place_fails(self, torch_module, offload="none"):
        held.extend(weakref.ref(m) for m in self._modules())
        raise error("CUDA out of memory. Tried to allocate 35.00 GiB")

    monkeypatch.setattr(LTX2Engine, "_place", place_fails)
    eng = LTX2Engine(tiny_engine_config(tiny_ltx2, two_stage=True))
    expected = OutOfMemory if error is torch.OutOfMemoryError else RuntimeError
    try:
        eng.load()
    except expected as exc:
        message = str(exc)
    else:
        pytest.fail("load did not fail")
    gc.collect()
    assert len(held) >= 7  # text encoder, connectors, transformer, VAEs, vocoder, upsampler
    assert [ref for ref in held if ref() is not None] == []
    assert eng._pipes == {} and eng._upsample_pipe is None and not eng._loaded
    if expected is OutOfMemory:
        assert "offload" in message and "loading the weights" in message


def test_cuda_oom_in_generate_is_out_of_memory_with_advice_and_the_engine_goes_on(engine, monkeypatch):
    emptied: list[int] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(1))
    handle = engine._pipes["t2v"].transformer.register_forward_pre_hook(fake_oom)
    try:
        with pytest.raises(OutOfMemory) as info:
            engine.generate(request(seed=8))
    finally:
        handle.remove()
    assert "offload" in str(info.value) and "20.00 GiB" in str(info.value) and "64x36" in str(info.value)
    assert emptied
    _, frames, _ = run(engine, request(seed=8))
    assert len(frames) == 120


# ----------------------------------------------------------------------------- 10. negative prompt cache


def test_negative_prompt_is_encoded_once_per_process(tiny_ltx2):
    eng = loaded(tiny_ltx2, guidance="cheap", steps=2)
    encoder = eng._pipes["t2v"].text_encoder
    with calls(encoder) as first:
        _, a, _ = run(eng, request(seed=9, prompt="a dog"))
    with calls(encoder) as second:
        _, b, _ = run(eng, request(seed=9, prompt="a dog"))
        run(eng, request(seed=9, prompt="a cat on the street"))
    with calls(encoder) as custom:
        run(eng, request(seed=9, negative_prompt="blurry"))
    assert first[0] == 2 and second[0] == 2 and custom[0] == 2  # prompt + negative, then prompts only
    assert np.array_equal(np.stack(a), np.stack(b))  # cached embeddings give the same clip
    eng.unload()  # as resident = false does after every job: the cache stays
    eng.load()
    with calls(eng._pipes["t2v"].text_encoder) as after_reload:
        run(eng, request(seed=9))
    assert after_reload[0] == 1
    eng.unload()


# ----------------------------------------------------------------------------- VAE temporal tiling


def test_temporal_tiling_keeps_frames_aligned_with_the_untiled_decode(tiny_ltx2):
    from clipforge.engines.ltx2_tiny import tiny_components
    from clipforge.engines.ltx2_vae import aligned_temporal_tiled_decode

    vae = tiny_components()["vae"]
    torch.manual_seed(0)
    z = torch.randn(1, 8, 16, 2, 2)
    with torch.inference_mode():
        untiled = vae.decode(z, return_dict=False)[0]
        vae.use_framewise_decoding = True
        vae.tile_sample_min_num_frames, vae.tile_sample_stride_num_frames = 96, 64
        tiled = aligned_temporal_tiled_decode(vae, z, None, return_dict=False)[0]
    assert tiled.shape == untiled.shape == (1, 3, 121, 64, 64)

    def mean_diff(k: slice, shift: int = 0) -> float:
        idx = range(k.start, k.stop)
        return float((tiled[:, :, list(idx)] - untiled[:, :, [i + shift for i in idx]]).abs().mean() * 127.5)

    after_boundary = slice(100, 121)  # the second tile alone: diffusers' decode has frame k-1 there
    assert mean_diff(after_boundary) < 1.0 < 20.0 < mean_diff(after_boundary, -1)
    assert mean_diff(slice(0, 121)) < 4.0  # diffusers' own temporal tiling: 14/255 with these tiles

    eng = loaded(tiny_ltx2, vae_temporal_tiling=True)
    vae = eng._pipes["t2v"].vae
    assert vae.use_framewise_decoding and vae._temporal_tiled_decode.__func__ is aligned_temporal_tiled_decode
    eng.unload()
