"""`[autoscale]` in the models config: which engines count as available with no live worker."""

from __future__ import annotations

import pytest

from clipforge.core.errors import ConfigError
from clipforge.core.routing import engine_reason, parse_routing, pick_engine

MODELS = {"seed": {"engines": ["ltx2", "preview"]}, "preview": {"engines": ["preview"]}}


def test_autoscale_table_is_read_and_checked():
    routing = parse_routing({"models": MODELS, "autoscale": {"engines": ["ltx2"], "cold_start_seconds": 90}})
    assert routing.autoscaled == {"ltx2"} and routing.cold_start_seconds == 90.0
    assert parse_routing({"models": MODELS}).autoscaled == frozenset()
    with pytest.raises(ConfigError, match=r"\[autoscale\] engines wan are not routed by any model"):
        parse_routing({"models": MODELS, "autoscale": {"engines": ["wan"]}})
    with pytest.raises(ConfigError, match="must be a list of engine names"):
        parse_routing({"models": MODELS, "autoscale": {"engines": "ltx2"}})
    with pytest.raises(ConfigError, match="cold_start_seconds must be a number >= 0, got -1"):
        parse_routing({"models": MODELS, "autoscale": {"engines": ["ltx2"], "cold_start_seconds": -1}})


def test_an_autoscaled_engine_no_worker_reports_is_picked_in_its_route_order():
    routing = parse_routing({"models": MODELS, "autoscale": {"engines": ["ltx2"]}})
    seed, auto = routing.models["seed"], routing.autoscaled
    preview_live = {"preview": {"ready": True, "workers": 1, "reasons": []}}
    assert pick_engine(seed, {}, autoscaled=auto) == "ltx2"  # scaled to zero: queue for it, a worker will start
    assert pick_engine(seed, preview_live, autoscaled=auto) == "ltx2"  # best first, even with preview workers up
    assert pick_engine(seed, preview_live) == "preview"  # not autoscaled: only live, ready engines count
    assert pick_engine(routing.models["preview"], {}, autoscaled=auto) is None
    broken = {"ltx2": {"ready": False, "workers": 0, "reasons": ["weights not found"]}, **preview_live}
    assert pick_engine(seed, broken, autoscaled=auto) == "preview"  # a live worker says it cannot run ltx2
    assert engine_reason("ltx2", {}, autoscaled=auto) == (
        "no live worker; the autoscaler starts one when a job is queued")
    assert engine_reason("ltx2", {}) == "no live worker serves this engine"
