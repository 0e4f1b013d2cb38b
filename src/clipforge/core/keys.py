"""API keys and their per-key policies (rate limits, quotas), from settings and an optional TOML file.

Keys file (`CLIPFORGE_KEYS_FILE`):

    [defaults]
    requests_per_minute = 1200     # 0: unlimited
    max_active_jobs = 16           # generations queued or running at once; 0: unlimited

    [keys."cf-alice-secret"]
    name = "alice"
    requests_per_minute = 60
    max_active_jobs = 2
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from clipforge.core.errors import ConfigError

DEFAULT_REQUESTS_PER_MINUTE = 1200
DEFAULT_MAX_ACTIVE_JOBS = 16


def owner_id(key: str) -> str:
    """The id a key's generations are stored under: a hash, so raw keys never reach the store."""
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class KeyPolicy:
    owner: str
    name: str
    requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE
    max_active_jobs: int = DEFAULT_MAX_ACTIVE_JOBS


def load_policies(keys: tuple[str, ...], keys_file: Path | None) -> dict[str, KeyPolicy]:
    """Key -> policy for every key in settings and in the keys file."""
    try:
        data = tomllib.loads(Path(keys_file).read_text()) if keys_file else {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"keys file {keys_file}: not valid TOML: {exc}") from None
    defaults = data.get("defaults", {})
    rpm = int(defaults.get("requests_per_minute", DEFAULT_REQUESTS_PER_MINUTE))
    active = int(defaults.get("max_active_jobs", DEFAULT_MAX_ACTIVE_JOBS))
    policies = {k: KeyPolicy(owner_id(k), f"key{i + 1}", rpm, active) for i, k in enumerate(keys)}
    for key, entry in data.get("keys", {}).items():
        policies[key] = KeyPolicy(owner_id(key), str(entry.get("name", owner_id(key))),
                                  int(entry.get("requests_per_minute", rpm)),
                                  int(entry.get("max_active_jobs", active)))
    return policies
