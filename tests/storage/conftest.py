from __future__ import annotations

from collections.abc import Iterator

import pytest

from storage.s3_server import S3Server


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server
