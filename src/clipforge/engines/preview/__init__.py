"""The `preview` engine: CPU clips with prompt-driven camera, parallax, ambient motion, tail morphs,
procedural text-to-video scenes and a layered soundscape. No weights; deterministic per seed."""

from clipforge.engines.preview.engine import PreviewEngine

__all__ = ["PreviewEngine"]
