"""Engine settings as each engine class declares them, and the check of an `[engines.<name>]` table.

An engine class lists its settings in `options` (a tuple of `Option`: name, type, allowed values,
help). `check_engine_config` refuses, with one ConfigError naming the key and what is allowed, a key
that is not declared, a value of the wrong type and a value outside the allowed ones, so a typo
stops `serve`, `worker` and `models` at start instead of failing every job later. A class that
declares nothing (`options = None`, the default for custom `class = "module:Class"` engines) has its
table passed through unchecked. No I/O and no heavy imports here: the CLI checks before starting.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from clipforge.core.errors import ConfigError

# Keys every engine table may hold, whatever the class declares.
COMMON_KEYS = ("class",)

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list"}


@dataclass(frozen=True)
class Option:
    """One setting of an engine: `types` its TOML types (int is accepted where float is), `choices`
    the allowed values when the set is closed."""

    name: str
    types: tuple[type, ...] = (str,)
    choices: tuple[Any, ...] | None = None
    help: str = ""

    def check(self, table: str, value: Any) -> None:
        if self.choices is not None:
            if not any(_same(value, choice) for choice in self.choices):
                raise ConfigError(f"{table}: {self.name} = {_toml(value)} is not allowed; allowed values: "
                                  f"{', '.join(_toml(c) for c in self.choices)}")
            return
        if not any(_is_type(value, t) for t in self.types):
            wanted = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in self.types)
            raise ConfigError(f"{table}: {self.name} must be {wanted}, got {_toml(value)}")


def check_engine_config(engine: str, options: Iterable[Option] | None, config: dict[str, Any]) -> None:
    """Refuse unknown keys and bad values in the `[engines.<engine>]` table (ConfigError, one line)."""
    if options is None:
        return
    table = f"[engines.{engine}]"
    declared = {o.name: o for o in options}
    for key, value in config.items():
        if key in COMMON_KEYS:
            continue
        option = declared.get(key)
        if option is None:
            close = difflib.get_close_matches(key, declared, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            allowed = ", ".join(sorted(declared)) or "none"
            raise ConfigError(f"{table}: unknown key '{key}'{hint}; allowed keys: {allowed}")
        option.check(table, value)


def _is_type(value: Any, t: type) -> bool:
    if isinstance(value, bool):
        return t is bool
    if t is float:
        return isinstance(value, int | float)
    return isinstance(value, t)


def _same(value: Any, choice: Any) -> bool:
    return type(value) is type(choice) and value == choice


def _toml(value: Any) -> str:
    """A value as it is written in TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)
