"""Engines: one file per model family behind the small interface in `base`."""
