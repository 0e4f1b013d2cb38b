"""A model's task in the models config: named, or read from an AIML-style id."""

from __future__ import annotations

import tomllib

from clipforge.core.routing import parse_routing

# README "Hosted providers": the seed models on the hosted Kling 2.6 Pro, in three lines
THREE_LINES = """
models."klingai/video-v2-6-pro-image-to-video".engines = ["aiml"]
models."klingai/video-v2-6-pro-text-to-video".engines = ["aiml"]
engines.aiml.api_key_env = "AIMLAPI_API_KEY"
"""


def test_the_readme_three_lines_keep_the_seed_ids_tasks():
    routing = parse_routing(tomllib.loads(THREE_LINES))
    assert routing.route("klingai/video-v2-6-pro-image-to-video").task == "i2v"
    assert routing.route("klingai/video-v2-6-pro-text-to-video").task == "t2v"


def test_a_named_task_wins_and_other_ids_take_any():
    routing = parse_routing({"models": {
        "acme/clip-image-to-video": {"engines": ["preview"], "task": "any"},
        "sora-2": {"engines": ["preview"]},
    }})
    assert routing.route("acme/clip-image-to-video").task == "any"
    assert routing.route("sora-2").task == "any"
