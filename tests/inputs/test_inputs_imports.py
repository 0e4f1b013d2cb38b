"""clipforge.inputs stays light: the api imports it, so it must not pull PyAV, torch, engines or the api."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import clipforge.inputs
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("av", "torch", "diffusers", "cv2")
               or m.startswith(("clipforge.engines", "clipforge.api", "clipforge.media", "clipforge.worker")))
print(",".join(heavy))
"""


def test_inputs_imports_nothing_heavy() -> None:
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
