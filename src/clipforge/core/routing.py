"""Model routing: public model ids -> ordered engine names, from a TOML file."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from clipforge.core.capabilities import refusal
from clipforge.core.errors import ConfigError, InvalidInput

TASKS = ("i2v", "t2v", "any")


@dataclass(frozen=True)
class ModelRoute:
    id: str
    engines: tuple[str, ...]
    task: str = "any"


@dataclass(frozen=True)
class Routing:
    models: dict[str, ModelRoute]
    engines: dict[str, dict[str, Any]] = field(default_factory=dict)

    def route(self, model: str) -> ModelRoute:
        try:
            return self.models[model]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise InvalidInput("model", f"model: unknown model '{model}'; known models: {known}",
                               "unknown_model") from None

    def engine_config(self, name: str) -> dict[str, Any]:
        return dict(self.engines.get(name, {}))

    @property
    def engine_names(self) -> list[str]:
        names: list[str] = []
        for route in self.models.values():
            names += [e for e in route.engines if e not in names]
        return names


def parse_routing(data: dict[str, Any]) -> Routing:
    models = {}
    for model_id, entry in data.get("models", {}).items():
        engines = tuple(entry.get("engines", ()))
        task = entry.get("task", "any")
        if not engines:
            raise ConfigError(f"models config: model '{model_id}' lists no engines")
        if task not in TASKS:
            raise ConfigError(f"models config: model '{model_id}' has task '{task}', expected one of {TASKS}")
        models[model_id] = ModelRoute(model_id, engines, task)
    return Routing(models, dict(data.get("engines", {})))


def load_routing(path: Path | None = None) -> Routing:
    """Read a routing TOML file; with no path, the packaged default."""
    if path is None:
        text = resources.files("clipforge.config").joinpath("models.toml").read_text()
    else:
        text = Path(path).read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"models config {path}: not valid TOML: {exc}") from None
    return parse_routing(data)


WORKER_TTL = 20.0  # seconds: a worker that has not refreshed its row for this long is not live


def engine_states(live_workers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per engine: ready on any live worker? and the reasons reported where not."""
    states: dict[str, dict[str, Any]] = {}
    for worker in live_workers:
        for name, state in worker["info"].get("engines", {}).items():
            entry = states.setdefault(name, {"ready": False, "workers": 0, "reasons": []})
            if state.get("ready"):
                entry["ready"] = True
                entry["workers"] += 1
                entry.setdefault("limits", state.get("limits") or {})
            elif state.get("reason") and state["reason"] not in entry["reasons"]:
                entry["reasons"].append(state["reason"])
    return states


def engine_reason(name: str, states: dict[str, dict[str, Any]]) -> str | None:
    state = states.get(name)
    if state is None:
        return "no live worker serves this engine"
    if state["ready"]:
        return None
    return "; ".join(state["reasons"]) or "not ready"


def pick_engine(route: ModelRoute, states: dict[str, dict[str, Any]], asked: dict[str, Any] | None = None,
                after: str | None = None) -> str | None:
    """The first engine in the route (after `after`, when given) that a live worker reports ready and
    whose limits allow what the request asks for."""
    names = route.engines[route.engines.index(after) + 1:] if after in route.engines else route.engines
    for name in names:
        state = states.get(name, {})
        if state.get("ready") and (asked is None or refusal(name, state.get("limits", {}), asked) is None):
            return name
    return None
