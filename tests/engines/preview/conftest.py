"""Fixtures for the preview engine's tests."""

from __future__ import annotations

import numpy as np
import pytest

from engines.preview.pictures import landscape


@pytest.fixture(scope="session")
def picture() -> np.ndarray:
    return landscape()
