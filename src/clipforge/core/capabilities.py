"""What an engine can be asked for, and the check that refuses a request an engine cannot honour.

Engines declare `limits` (see `Engine.limits`): a mapping from a `GenerationSpec` field to None (the
engine never takes that field) or to the list of values it accepts; a key `i2v.<field>` or `t2v.<field>`
applies to that task only. Workers publish each engine's limits
with its readiness; the api checks a request against them when it picks an engine, so a field the routed
provider cannot honour is a 400 naming the field, never silently dropped.
"""

from __future__ import annotations

from typing import Any

DEFAULT_CFG_SCALE = 0.5

# Spec field -> the request field named in errors, per dialect (fields not listed keep their name).
AIML_FIELD_NAMES = {"image": "image_url", "tail_image": "tail_image_url"}
OPENAI_FIELD_NAMES = {"image": "input_reference", "duration": "seconds"}


def asked_fields(spec: dict[str, Any], has_image: bool = False, has_tail: bool = False) -> dict[str, Any]:
    """The fields a request asks for explicitly (defaults left out), with their values."""
    asked: dict[str, Any] = {"duration": spec.get("duration", 5),
                             "generate_audio": spec.get("generate_audio", True)}
    if has_image:
        asked["image"] = True
    if has_tail:
        asked["tail_image"] = True
    if spec.get("seed_given"):
        asked["seed"] = spec.get("seed")
    if spec.get("cfg_scale") is not None and spec["cfg_scale"] != DEFAULT_CFG_SCALE:
        asked["cfg_scale"] = spec["cfg_scale"]
    for name in ("negative_prompt", "aspect_ratio"):  # not `size`: the OpenAI dialect always sets one
        if spec.get(name) is not None:
            asked[name] = spec[name]
    return asked


def job_asked(params: dict[str, Any]) -> dict[str, Any]:
    """What a queued job asks for, from its params (`seed_given` is recorded beside the spec)."""
    spec = params["spec"]
    return asked_fields({**spec, "seed_given": bool(params.get("seed_given"))}, bool(spec.get("image")),
                        bool(spec.get("tail_image")))


def refusal(engine: str, limits: dict[str, Any], asked: dict[str, Any],
            names: dict[str, str] | None = None) -> tuple[str, str] | None:
    """(request field, message) for the first asked field the engine cannot honour, else None."""
    names = names or {}
    mode = "i2v" if asked.get("image") else "t2v"
    for name, value in asked.items():
        key = name if name in limits else f"{mode}.{name}"
        if key not in limits:
            continue
        allowed = limits[key]
        field = names.get(name, name)
        if allowed is None:
            return field, f"{field}: the engine '{engine}' serving this model does not take {field}; leave it out"
        if value not in allowed:
            shown = ", ".join(str(v) for v in allowed)
            return field, f"{field}: the engine '{engine}' serving this model accepts only {shown}, got {value!r}"
    return None
