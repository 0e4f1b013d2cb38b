"""Without the GPU packages (`make serve` installs none), ltx2 says how to install them, as the README does."""

from __future__ import annotations

import importlib.util

import pytest

from clipforge.engines import ltx2


def test_missing_torch_points_at_make_install_gpu(monkeypatch: pytest.MonkeyPatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(ltx2.importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    ready = ltx2.LTX2Engine.readiness({})
    assert not ready.ready
    assert ready.reason == ("python package 'torch' is not installed: make install-gpu (in the checkout) "
                            "or pip install 'clipforge[models]'")
