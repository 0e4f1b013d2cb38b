"""Artifact stores: where input images and output media live (local directory or S3)."""

from clipforge.storage.base import ArtifactStore, open_artifacts

__all__ = ["ArtifactStore", "open_artifacts"]
