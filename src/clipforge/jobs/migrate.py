"""Versioned schema migrations: numbered `.sql` files per backend, applied in order once each."""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import resources

_NAME = re.compile(r"^(\d+)_[\w-]+\.sql$")


def migration_files(backend: str) -> list[tuple[int, str, str]]:
    """`(version, name, sql)` for every migration of a backend, by version."""
    folder = resources.files("clipforge.jobs.migrations").joinpath(backend)
    found = []
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append((int(m.group(1)), entry.name, entry.read_text()))
    return sorted(found)


def pending(backend: str, applied: set[int]) -> list[tuple[int, str, str]]:
    return [m for m in migration_files(backend) if m[0] not in applied]


def split_statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]


def apply_all(backend: str, applied: set[int], run: Callable[[int, str, str], None]) -> list[str]:
    """Call `run(version, name, sql)` for each pending migration; returns the names applied."""
    done = []
    for version, name, sql in pending(backend, applied):
        run(version, name, sql)
        done.append(name)
    return done
