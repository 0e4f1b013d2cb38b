"""Parsing of generation parameters, shared by both dialects. Every refusal names its field.

Request bodies pass `check_body` first (JSON and forms alike): it bounds nesting depth and refuses
text that is not valid Unicode (a lone surrogate such as `"\\ud800"` parses as JSON but cannot be
stored or sent back as UTF-8), naming the field it found it in. Field-level rules for text (length,
emptiness, and any rule about which characters a text may hold) live in `text`.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from typing import Any

from clipforge.core.errors import InvalidInput
from clipforge.core.spec import ASPECT_RATIOS, DURATIONS, MAX_PROMPT_CHARS

MAX_SEED = 2**32 - 1
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
MAX_JSON_DEPTH = 16  # the deepest a create body needs is 2 (input_reference.image_url, webhook_events[i])
MAX_JSON_VALUES = 50_000  # commas in a JSON body: values, or text (two prompts of 2500 characters at most)
_SURROGATE = re.compile("[\ud800-\udfff]")


def json_object(raw: bytes, expected: str) -> dict[str, Any]:
    """A request body parsed as a JSON object (an empty body is `{}`); 400 naming `body` otherwise."""
    # Parsing runs on the event loop and holds the GIL: 32 MB of tiny values took over 10 s of it
    # (every other request waited). N values need N - 1 commas, so counting them first (C speed) bounds
    # the work; commas inside text count too, and a create body's texts hold a few thousand at most.
    if raw.count(b",") >= MAX_JSON_VALUES:
        raise InvalidInput("body", f"body: holds too many values (at least {MAX_JSON_VALUES} commas); a create "
                           "request needs a few dozen", "json_values")
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput("body", f"body: is not valid JSON ({exc})", "json") from None
    except RecursionError:
        raise InvalidInput("body", f"body: is nested too deeply; at most {MAX_JSON_DEPTH} levels are allowed",
                           "json_depth") from None
    except ValueError:  # an integer literal longer than Python's int_max_str_digits (4300)
        raise InvalidInput("body", "body: holds a number with too many digits to be a valid value",
                           "json_number") from None
    if not isinstance(body, dict):
        raise InvalidInput("body", f"body: must be {expected}", "json")
    check_body(body)
    return body


def check_body(body: dict[str, Any]) -> None:
    """Refuse a body nested deeper than MAX_JSON_DEPTH or holding text that is not valid Unicode.

    Runs over every value, known field or not (an ignored field is still logged and hashed); the
    refusal names the field, e.g. `webhook_events.1`.
    """
    for path, depth, value in _walk(body):
        if depth > MAX_JSON_DEPTH:
            raise InvalidInput("body", f"body: is nested too deeply; at most {MAX_JSON_DEPTH} levels are allowed",
                               "json_depth")
        if isinstance(value, str) and _SURROGATE.search(value):
            field = path or "body"
            raise InvalidInput(field, f"{field}: is not valid Unicode text (it holds a lone surrogate code point "
                               f"such as \\ud800); send UTF-8 text", "unicode")


def _walk(body: dict[str, Any]) -> Iterator[tuple[str, int, Any]]:
    """(dotted path, depth, value) for every key and value, iteratively (no recursion to exhaust)."""
    stack: list[tuple[str, int, Any]] = [("", 0, body)]
    while stack:
        path, depth, value = stack.pop()
        yield path, depth, value
        if isinstance(value, dict):
            for key, item in value.items():
                key_text = str(key)
                yield path or "body", depth, key_text  # a key is checked as text of its parent
                stack.append((f"{path}.{key_text}" if path else key_text, depth + 1, item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}" if path else str(i), depth + 1, item) for i, item in enumerate(value))


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
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int too big for a float
        raise InvalidInput(field, f"{field}: must be one of {allowed} seconds, got {_short(value)}",
                           "duration") from None
    if number not in allowed:
        raise InvalidInput(field, f"{field}: must be one of {allowed} seconds, got {value!r}", "duration")
    return int(number)


def aspect_ratio(value: Any, field: str = "aspect_ratio") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in ASPECT_RATIOS:
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
    except (ValueError, OverflowError):  # OverflowError: an int too big for a float
        raise InvalidInput(field, f"{field}: must be a number between {lo} and {hi}, got {_short(value)}",
                           "range") from None
    if not lo <= number <= hi:
        raise InvalidInput(field, f"{field}: must be between {lo} and {hi}, got {value!r}", "range")
    return number


def _short(value: Any, limit: int = 40) -> str:
    """`repr(value)`, cut to `limit` characters (a 4000-digit number is not echoed whole)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


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
