"""Parsing of generation parameters, shared by both dialects. Every refusal names its field."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from clipforge.core.errors import InvalidInput
from clipforge.core.spec import ASPECT_RATIOS, DURATIONS, MAX_PROMPT_CHARS

MAX_SEED = 2**32 - 1
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def json_object(raw: bytes, expected: str) -> dict[str, Any]:
    """A request body parsed as a JSON object (an empty body is `{}`); 400 naming `body` otherwise."""
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput("body", f"body: is not valid JSON ({exc})", "json") from None
    if not isinstance(body, dict):
        raise InvalidInput("body", f"body: must be {expected}", "json")
    return body


def text(body: dict[str, Any], field: str, *, required: bool, max_chars: int = MAX_PROMPT_CHARS) -> str | None:
    value = body.get(field)
    if value is None:
        if required:
            raise InvalidInput(field, f"{field}: is required", "missing")
        return None
    if not isinstance(value, str):
        raise InvalidInput(field, f"{field}: must be a string, got {type(value).__name__}", "type")
    if required and not value.strip():
        raise InvalidInput(field, f"{field}: must not be empty", "empty")
    if len(value) > max_chars:
        raise InvalidInput(field, f"{field}: is {len(value)} characters; at most {max_chars} are allowed",
                           "too_long")
    refuse_control_characters(value, field)
    return value


def refuse_control_characters(value: str, field: str) -> None:
    """Text reaches engines and their tools (espeak-ng speaks the dialogue): no control characters
    but tab and line breaks."""
    bad = CONTROL_CHARACTERS.search(value)
    if bad is not None:
        raise InvalidInput(field, f"{field}: must not contain control characters; found U+{ord(bad.group()):04X} "
                           f"at position {bad.start()}", "control_character")


def duration(value: Any, field: str = "duration", allowed: tuple[int, ...] = DURATIONS) -> int:
    """5 or 10; numeric strings like "5" are accepted (the hosted API's clients send them)."""
    if value is None:
        return allowed[0]
    if isinstance(value, bool):
        raise InvalidInput(field, f"{field}: must be one of {allowed} seconds, got {value!r}", "duration")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(field, f"{field}: must be one of {allowed} seconds, got {value!r}", "duration") from None
    if number not in allowed:
        raise InvalidInput(field, f"{field}: must be one of {allowed} seconds, got {value!r}", "duration")
    return int(number)


def aspect_ratio(value: Any, field: str = "aspect_ratio") -> str | None:
    if value is None:
        return None
    if value not in ASPECT_RATIOS:
        raise InvalidInput(field, f"{field}: must be one of {', '.join(ASPECT_RATIOS)}, got {value!r}",
                           "aspect_ratio")
    return value


def number_in(value: Any, field: str, lo: float, hi: float, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidInput(field, f"{field}: must be a number between {lo} and {hi}, got {value!r}", "range")
    try:
        number = float(value)
    except ValueError:
        raise InvalidInput(field, f"{field}: must be a number between {lo} and {hi}, got {value!r}",
                           "range") from None
    if not lo <= number <= hi:
        raise InvalidInput(field, f"{field}: must be between {lo} and {hi}, got {value!r}", "range")
    return number


def flag(value: Any, field: str, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidInput(field, f"{field}: must be true or false, got {value!r}", "type")


def seed(value: Any, field: str = "seed") -> int:
    """The given seed, or a random one (recorded, so a result can be reproduced)."""
    if value is None:
        return secrets.randbelow(MAX_SEED + 1)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput(field, f"{field}: must be an integer between 0 and {MAX_SEED}, got {value!r}", "range")
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(field, f"{field}: must be an integer between 0 and {MAX_SEED}, got {value!r}",
                           "range") from None
    if not 0 <= number <= MAX_SEED:
        raise InvalidInput(field, f"{field}: must be between 0 and {MAX_SEED}, got {number}", "range")
    return number
