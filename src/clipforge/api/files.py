"""Serving a stored file so that deleting it meanwhile cannot break the answer.

Starlette's FileResponse opens its path only after it has sent the status line and headers, so a
delete (`DELETE /v1/videos/<id>`, or expiry) between the two left a 200 with a Content-Length and
no body, and a traceback in the log. `OpenedFileResponse` opens the file first and serves that open
file (through its `/dev/fd` name, so Range requests work as before): an unlinked file stays
readable while it is open. The descriptor is closed when the response ends, however it ends.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi.responses import FileResponse
from starlette.types import Receive, Scope, Send


class OpenedFileResponse(FileResponse):
    """A FileResponse over a file opened now (FileNotFoundError here when it is already gone)."""

    def __init__(self, path: Path, **kwargs: Any) -> None:
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            super().__init__(f"/dev/fd/{self._fd}", stat_result=os.fstat(self._fd), **kwargs)
        except BaseException:
            os.close(self._fd)
            raise

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            os.close(self._fd)


def opened_file_response(path: Path, **kwargs: Any) -> OpenedFileResponse | None:
    """The response for `path`, or None when the file is gone (blocking: call it off the loop)."""
    try:
        return OpenedFileResponse(path, **kwargs)
    except FileNotFoundError:
        return None
