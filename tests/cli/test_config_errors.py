"""Bad settings and config files end a command with one `Error:` line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from clipforge.cli import main


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.mark.parametrize(("toml", "expected"), [
    ('[models."x"]\nengines = []\n', "model 'x' lists no engines"),
    ('[models."x"]\nengines = ["preview"]\ntask = "v2v"\n', "has task 'v2v'"),
    ("not toml [[[", "not valid TOML"),
])
def test_bad_models_config(tmp_path: Path, toml: str, expected: str):
    path = tmp_path / "models.toml"
    path.write_text(toml)
    code, out = run("models", "--models-config", str(path))
    assert code == 1 and out.startswith("Error: ") and expected in out and "Traceback" not in out


def test_bad_database_and_storage_urls(tmp_path: Path):
    code, out = run("migrate", "--home", str(tmp_path), "--database-url", "mysql://u:secret@h/db")
    assert code == 1 and out.startswith("Error: database URL must start with") and "secret" not in out
    code, out = run("serve", "--home", str(tmp_path), "--storage-url", "ftp://x", "--workers", "0")
    assert code == 1 and out.strip().splitlines()[-1].startswith("Error: storage URL must start with")


def test_unreachable_postgres_is_one_line(tmp_path: Path):
    code, out = run("migrate", "--home", str(tmp_path), "--database-url",
                    "postgresql://nobody:pw@127.0.0.1:1/x?connect_timeout=1")
    assert code == 1 and out.startswith("Error: cannot open the job store postgresql://nobody:***@")


def test_bad_keys_file(tmp_path: Path):
    keys = tmp_path / "keys.toml"
    keys.write_text("[defaults\n")
    code, out = run("serve", "--home", str(tmp_path), "--keys-file", str(keys), "--workers", "0")
    last = out.strip().splitlines()[-1]
    assert code == 1 and last.startswith("Error: keys file") and "not valid TOML" in last and "Traceback" not in out
