"""Engine names -> classes, imported lazily so that naming an engine never imports torch."""

from __future__ import annotations

import importlib
from typing import Any

from clipforge.engines.base import Engine, Readiness

BUILTIN_ENGINES: dict[str, str] = {
    "preview": "clipforge.engines.preview:PreviewEngine",
    "ltx2": "clipforge.engines.ltx2:LTX2Engine",
}


def engine_class(name: str, extra: dict[str, str] | None = None) -> type[Engine]:
    """The class for an engine name; `extra` maps more names to `module:Class` paths."""
    table = {**BUILTIN_ENGINES, **(extra or {})}
    if name not in table:
        raise ValueError(f"unknown engine '{name}'; known engines: {', '.join(sorted(table))}")
    module, _, attr = table[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def engine_readiness(name: str, config: dict[str, Any], extra: dict[str, str] | None = None) -> Readiness:
    try:
        cls = engine_class(name, extra)
    except Exception as exc:  # an engine module that fails to import is simply not ready
        return Readiness(False, f"engine '{name}' cannot be imported: {exc}")
    try:
        return cls.readiness(config)
    except Exception as exc:
        return Readiness(False, f"readiness check failed: {exc}")
