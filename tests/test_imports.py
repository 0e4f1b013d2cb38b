"""Dependency direction, checked by importing each top package in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def loaded_after(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out))


def prefixed(mods: set[str], *prefixes: str) -> set[str]:
    return {m for m in mods if any(m == p or m.startswith(p + ".") for p in prefixes)}


def test_api_never_loads_engines_media_or_torch():
    mods = loaded_after("clipforge.api.app")
    assert prefixed(mods, "torch", "diffusers", "av", "cv2", "clipforge.engines", "clipforge.media",
                    "clipforge.worker") == set()


def test_core_has_no_io_dependencies():
    mods = loaded_after("clipforge.core.spec") | loaded_after("clipforge.core.routing")
    assert prefixed(mods, "fastapi", "httpx", "av", "numpy", "PIL", "sqlite3", "clipforge.jobs",
                    "clipforge.api") == set()


@pytest.mark.parametrize("module", ["clipforge.jobs.sqlite", "clipforge.jobs.cleanup", "clipforge.storage.local",
                                    "clipforge.media.encode",
                                    "clipforge.engines.base", "clipforge.inputs.images"])
def test_lower_layers_do_not_import_upper_ones(module: str):
    mods = loaded_after(module)
    assert prefixed(mods, "clipforge.api", "clipforge.worker", "clipforge.cli", "clipforge.client") == set()


def test_worker_does_not_load_torch_until_an_engine_needs_it():
    mods = loaded_after("clipforge.worker.loop")
    assert prefixed(mods, "torch", "diffusers", "clipforge.api") == set()


def test_client_imports_nothing_of_the_server():
    pytest.importorskip("clipforge.client")
    mods = loaded_after("clipforge.client")
    clipforge_mods = prefixed(mods, "clipforge") - prefixed(mods, "clipforge.client") - {"clipforge"}
    assert clipforge_mods == set()
    assert prefixed(mods, "fastapi", "av", "numpy", "torch") == set()


def test_serve_checks_engine_tables_without_loading_engines():
    code = ("import json, sys; from clipforge.cli import check_engine_tables; check_engine_tables(None); "
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    mods = set(json.loads(out))
    assert prefixed(mods, "torch", "cv2", "scipy", "clipforge.engines.preview", "clipforge.engines.ltx2") == set()
