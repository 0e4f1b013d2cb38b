"""Engine names -> classes, imported lazily so that naming an engine never imports torch.

Built-in engines are listed here; any other engine is declared in the models TOML with a
`class = "package.module:ClassName"` key in its `[engines.<name>]` table. `check_routing` checks
every engine table with its class's `check_config` (by default: against the settings it declares in
`Engine.options`).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from clipforge.core.errors import ConfigError
from clipforge.core.routing import Routing, load_routing
from clipforge.engines.base import Engine, Readiness

BUILTIN_ENGINES: dict[str, str] = {
    "preview": "clipforge.engines.preview:PreviewEngine",
    "ltx2": "clipforge.engines.ltx2:LTX2Engine",
    "fixed": "clipforge.engines.fixed:FixedEngine",
    "aiml": "clipforge.engines.hosted.aiml:AimlEngine",
    "fal": "clipforge.engines.hosted.fal:FalEngine",
    "replicate": "clipforge.engines.hosted.replicate:ReplicateEngine",
}


def engine_class(name: str, config: dict[str, Any] | None = None) -> type[Engine]:
    """The class for an engine: the config's `class` if given, else the built-in of that name."""
    path = (config or {}).get("class") or BUILTIN_ENGINES.get(name)
    if path is None:
        raise ValueError(f"unknown engine '{name}'; built-in engines: {', '.join(sorted(BUILTIN_ENGINES))}; "
                         "others need `class = \"module:Class\"` in their [engines.<name>] table")
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def create_engine(name: str, config: dict[str, Any]) -> Engine:
    return engine_class(name, config)({k: v for k, v in config.items() if k != "class"})


def engine_readiness(name: str, config: dict[str, Any]) -> Readiness:
    try:
        cls = engine_class(name, config)
    except Exception as exc:  # an engine module that fails to import is simply not ready
        return Readiness(False, f"engine '{name}' cannot be loaded: {exc}", public="the engine cannot be loaded")
    options = {k: v for k, v in config.items() if k != "class"}
    try:
        cls.check_config(name, config)
    except ConfigError as exc:  # the CLI refuses this at start; a store-side view says why it is not ready
        return Readiness(False, str(exc), public="its [engines] configuration is invalid")
    try:
        state = cls.readiness(options)
        return Readiness(state.ready, state.reason, cls.limits(options), state.detail, state.public)
    except Exception as exc:
        return Readiness(False, f"readiness check failed: {type(exc).__name__}: {exc}",
                         public="its readiness check failed")


def check_engine(name: str, config: dict[str, Any]) -> None:
    """ConfigError for an unknown key or a bad value in `[engines.<name>]`. An engine whose class
    cannot be imported here is left to `engine_readiness`, which reports it not ready."""
    try:
        cls = engine_class(name, config)
    except Exception:
        return
    cls.check_config(name, config)


def check_routing(routing: Routing) -> None:
    """Check every routed engine's table and every `[engines.*]` table."""
    for name in dict.fromkeys([*routing.engine_names, *routing.engines]):
        check_engine(name, routing.engine_config(name))


def check_models_config(path: Path | None) -> None:
    """Read a models TOML and check its engine tables (for a child process: see `clipforge serve`)."""
    check_routing(load_routing(path))
