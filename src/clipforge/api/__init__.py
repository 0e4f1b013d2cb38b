"""The HTTP api: both dialects over one job store. Never imports engines, media or torch."""

from clipforge.api.app import create_app

__all__ = ["create_app"]
