"""A custom engine (`class = "cli.declared_engine:DeclaredEngine"`) that declares its own settings."""

from __future__ import annotations

from clipforge.engines.fixed import FixedEngine
from clipforge.engines.options import Option


class DeclaredEngine(FixedEngine):
    name = "declared"
    options = (*FixedEngine.options, Option("quality", choices=("draft", "final"), help="render quality"))
