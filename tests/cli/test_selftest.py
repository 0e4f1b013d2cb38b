"""`clipforge selftest`: the install check a user runs, through the real ltx2 engine and worker."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from clipforge.cli import main


def test_selftest_passes_and_writes_a_report(tmp_path: Path):
    result = CliRunner().invoke(main, ["selftest", "--workdir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[: result.output.rindex("}") + 1])
    assert report["ok"] is True
    assert set(report["checks"]) >= {"readiness", "t2v", "i2v", "worker"}
    assert (tmp_path / "tiny-ltx2" / "model_index.json").exists()
    assert "selftest passed" in result.output
