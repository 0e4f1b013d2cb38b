"""Model routing: public model ids -> ordered engine names, from a TOML file.

An `[autoscale]` table names engines whose workers an autoscaler starts on demand (KEDA scaling a
worker Deployment from zero on queue depth): while no live worker reports such an engine, it still
counts as available, so jobs queue for it (their queue depth is what starts a worker) instead of
being refused, and `/readyz` stays ready. `cold_start_seconds` is how long a worker takes to come
up (node, image pull, weights): polls add it to the queue ETA.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from clipforge.core.capabilities import refusal
from clipforge.core.errors import ConfigError, InvalidInput
from clipforge.core.redact import public_reason

TASKS = ("i2v", "t2v", "any")
TASK_SUFFIXES = {"-image-to-video": "i2v", "-text-to-video": "t2v"}  # the AIML ids' own naming


def default_task(model_id: str) -> str:
    """A model's task when its table names none: what an AIML-style id says it is, else any."""
    return next((task for suffix, task in TASK_SUFFIXES.items() if model_id.endswith(suffix)), "any")


@dataclass(frozen=True)
class ModelRoute:
    id: str
    engines: tuple[str, ...]
    task: str = "any"


@dataclass(frozen=True)
class Routing:
    models: dict[str, ModelRoute]
    engines: dict[str, dict[str, Any]] = field(default_factory=dict)
    autoscaled: frozenset[str] = frozenset()
    cold_start_seconds: float = 0.0

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
        task = entry.get("task", default_task(model_id))
        if not engines:
            raise ConfigError(f"models config: model '{model_id}' lists no engines")
        if task not in TASKS:
            raise ConfigError(f"models config: model '{model_id}' has task '{task}', expected one of {TASKS}")
        models[model_id] = ModelRoute(model_id, engines, task)
    routing = Routing(models, dict(data.get("engines", {})))
    return _with_autoscale(routing, data.get("autoscale", {}))


def _with_autoscale(routing: Routing, table: dict[str, Any]) -> Routing:
    engines, cold = table.get("engines", []), table.get("cold_start_seconds", 0)
    if not isinstance(engines, list) or not all(isinstance(e, str) for e in engines):
        raise ConfigError("models config: [autoscale] engines must be a list of engine names")
    unknown = sorted(set(engines) - set(routing.engine_names))
    if unknown:
        raise ConfigError(f"models config: [autoscale] engines {', '.join(unknown)} are not routed by any model")
    if isinstance(cold, bool) or not isinstance(cold, int | float) or cold < 0:
        raise ConfigError(f"models config: [autoscale] cold_start_seconds must be a number >= 0, got {cold!r}")
    return Routing(routing.models, routing.engines, frozenset(engines), float(cold))


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
    """Per engine: ready on any live worker? and the reasons reported where not, in their public form
    (clipforge.core.redact: these reach API callers; the operator's own are in the worker's log and
    `clipforge models`)."""
    states: dict[str, dict[str, Any]] = {}
    for worker in live_workers:
        for name, state in worker["info"].get("engines", {}).items():
            entry = states.setdefault(name, {"ready": False, "workers": 0, "reasons": []})
            if state.get("ready"):
                entry["ready"] = True
                entry["workers"] += 1
                entry.setdefault("limits", state.get("limits") or {})
            elif (reason := public_reason(state)) and reason not in entry["reasons"]:
                entry["reasons"].append(reason)
    return states


def engine_reason(name: str, states: dict[str, dict[str, Any]], *, autoscaled: Collection[str] = ()) -> str | None:
    state = states.get(name)
    if state is None and name in autoscaled:
        return "no live worker; the autoscaler starts one when a job is queued"
    if state is None:
        return "no live worker serves this engine"
    if state["ready"]:
        return None
    return "; ".join(state["reasons"]) or "not ready"


def pick_engine(route: ModelRoute, states: dict[str, dict[str, Any]], asked: dict[str, Any] | None = None,
                after: str | None = None, *, autoscaled: Collection[str] = ()) -> str | None:
    """The first engine in the route (after `after`, when given) that a live worker reports ready and
    whose limits allow what the request asks for, or that is autoscaled and no live worker reports at
    all (scaled to zero: a queued job starts a worker; its limits are checked when it runs)."""
    names = route.engines[route.engines.index(after) + 1:] if after in route.engines else route.engines
    for name in names:
        state = states.get(name)
        if state is None:
            if name in autoscaled:
                return name
            continue
        if state.get("ready") and (asked is None or refusal(name, state.get("limits", {}), asked) is None):
            return name
    return None
