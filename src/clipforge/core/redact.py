"""Operator text made fit for API callers: no URLs, IP addresses, host names or file paths.

Engine readiness reasons are written for the operator (`clipforge models`, the worker's log) and may
name a provider's `base_url`, an internal host, an address or a weights path. `/v1/models`, `/readyz`
and a create's 503 may be reachable from the internet, so what they show is the engine's own public
reason (`Readiness.public`) where it gives one, and otherwise its reason passed through `redact`.
Host names without a dot (`gpu-box`) cannot be told from words: an engine whose reasons may hold one
sets `public`.
"""

from __future__ import annotations

import re

MAX_PUBLIC = 300  # characters of a public reason

URL = re.compile(r"\b[a-z][a-z0-9+.-]*://(?:[^\s'\"<>]*[^\s'\"<>.,;:)\]])?", re.I)
IPV6_BRACKETED = re.compile(r"\[[0-9a-f:.%]+\](?::\d{1,5})?", re.I)
IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?![\w.])")
IPV6 = re.compile(r"(?<![\w:])(?:(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}"
                  r"|(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4})*)?::(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4})*)?)(?![\w:])", re.I)
HOST = re.compile(r"(?<![\w.@-])(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]"
                  r"(?::\d{1,5})?(?![\w-])", re.I)
PATH = re.compile(r"(?<![\w.:/~-])(?:~|\.{1,2})?/[\w.@+%=-]+(?:/[\w.@+%=-]*)*")
# A dotted word ending so is a file name, not a host: kept.
FILE_ENDINGS = {"toml", "json", "yaml", "yml", "py", "txt", "md", "safetensors", "bin", "pt", "pth", "ckpt",
                "gguf", "onnx", "mp4", "png", "jpg", "jpeg", "webp", "log", "cfg", "ini", "sh", "whl", "gz"}


def _host(match: re.Match[str]) -> str:
    text = match.group(0)
    if ":" not in text and (text.rsplit(".", 1)[-1].lower() in FILE_ENDINGS
                            or text.lower().startswith(("engines.", "models."))):  # a TOML table name
        return text
    return "<host>"


def redact(text: str) -> str:
    """`text` with URLs, IP addresses, dotted host names and absolute or relative paths replaced by
    placeholders, cut to MAX_PUBLIC characters."""
    text = URL.sub("<url>", text)
    text = IPV6_BRACKETED.sub("<address>", text)
    text = IPV4.sub("<address>", text)
    text = HOST.sub(_host, text)
    text = PATH.sub("<path>", text)
    text = IPV6.sub("<address>", text)
    return text if len(text) <= MAX_PUBLIC else text[:MAX_PUBLIC - 1] + "\u2026"


def public_reason(state: dict) -> str | None:
    """What the HTTP API shows of an engine's readiness reason, from a worker's reported state: the
    engine's `public_reason`, else its `reason` redacted. Both pass `redact`."""
    text = state.get("public_reason") or state.get("reason")
    return redact(str(text)) if text else None
