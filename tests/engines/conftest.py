"""A tiny random LTX-2 checkpoint, built once per session, and engines loaded from it."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_ltx2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clipforge.engines.ltx2_tiny import build_tiny_ltx2

    return build_tiny_ltx2(tmp_path_factory.mktemp("ltx2") / "tiny-ltx2")


@pytest.fixture(scope="session")
def engine(tiny_ltx2: Path):
    """Single-stage engine (no upsampler), CPU, 64x64 native; `cheap` guidance (one batched CFG pass
    per step) keeps the tests fast; tests of the default `reference` set build their own engine."""
    from clipforge.engines.ltx2 import LTX2Engine
    from clipforge.engines.ltx2_tiny import tiny_engine_config

    eng = LTX2Engine(tiny_engine_config(tiny_ltx2, two_stage=False, guidance="cheap"))
    eng.load()
    yield eng
    eng.unload()


@pytest.fixture(scope="session")
def engine2(tiny_ltx2: Path):
    """Two-stage engine: 32x32 stage 1, x2 latent upsampler, 3 distilled refine steps (tiny distilled
    LoRA) at 64x64; `cheap` guidance."""
    from clipforge.engines.ltx2 import LTX2Engine
    from clipforge.engines.ltx2_tiny import tiny_engine_config

    eng = LTX2Engine(tiny_engine_config(tiny_ltx2, two_stage=True, guidance="cheap"))
    eng.load()
    yield eng
    eng.unload()
