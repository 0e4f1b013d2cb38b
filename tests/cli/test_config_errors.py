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


ROUTES = """
[models."a"]
engines = ["ltx2", "preview", "fixed"]

[models."b"]
engines = ["custom", "free"]

[engines.free]
class = "fleet.counting_engine:CountingEngine"
anything = "goes"

"""
BAD_ENGINE_TABLES = [
    ('[engines.ltx2]\npath = "/x"\noffload = "modle"\n',
     '[engines.ltx2]: offload = "modle" is not allowed; allowed values: "none", "model", "sequential", "group", '
     '"auto"'),
    ('[engines.ltx2]\nofload = "model"\n', "[engines.ltx2]: unknown key 'ofload' (did you mean 'offload'?)"),
    ('[engines.ltx2]\ntwo_stage = "yes"\n', 'two_stage = "yes" is not allowed; allowed values: "auto", true, false'),
    ('[engines.fixed]\nsteps = "forty"\n', '[engines.fixed]: steps must be an integer, got "forty"'),
    ("[engines.preview]\nspeed = 2\n", "[engines.preview]: unknown key 'speed'; allowed keys: none"),
    ('[engines.custom]\nclass = "cli.declared_engine:DeclaredEngine"\nquality = "ultra"\n',
     '[engines.custom]: quality = "ultra" is not allowed; allowed values: "draft", "final"'),
]


@pytest.mark.parametrize("command", ["models", "worker", "serve"])
@pytest.mark.parametrize(("table", "expected"), BAD_ENGINE_TABLES, ids=[t[1][:40] for t in BAD_ENGINE_TABLES])
def test_bad_engine_settings_stop_the_command(tmp_path: Path, command: str, table: str, expected: str):
    path = tmp_path / "models.toml"
    path.write_text(ROUTES + table)
    args = ["--models-config", str(path)] + ([] if command == "models" else ["--home", str(tmp_path)])
    code, out = run(command, *args, *(["--workers", "0"] if command == "serve" else []))
    last = out.strip().splitlines()[-1]
    assert code == 1 and last.startswith("Error: ") and expected in last and "Traceback" not in out, out


def test_declared_and_undeclared_engine_settings_are_accepted(tmp_path: Path):
    path = tmp_path / "models.toml"
    path.write_text(ROUTES + '[engines.custom]\nclass = "cli.declared_engine:DeclaredEngine"\nquality = "final"\n'
                    'steps = 3\n\n[engines.ltx2]\npath = "/nonexistent"\noffload = "auto"\ntwo_stage = true\n')
    code, out = run("models", "--models-config", str(path))
    assert code == 0, out
    assert "custom     ready" in out and "free       ready" in out and "ltx2       not ready" in out


def test_a_missing_database_or_storage_driver_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`make serve` installs neither psycopg nor boto3: a PostgreSQL or S3 URL then says what to install."""
    import sys

    for name in ("psycopg", "boto3"):
        monkeypatch.setitem(sys.modules, name, None)  # an import of it now fails as if it were not installed
    monkeypatch.delitem(sys.modules, "clipforge.jobs.postgres", raising=False)  # imported afresh, and failing
    code, out = run("migrate", "--home", str(tmp_path), "--database-url", "postgresql://u:pw@127.0.0.1:1/x")
    assert code == 1 and "Traceback" not in out, out
    assert out.strip() == ("Error: cannot open the job store postgresql://u:***@127.0.0.1:1/x: PostgreSQL needs the "
                           "postgres extra (psycopg is not installed): scripts/install.sh image, or "
                           "pip install 'clipforge[postgres]'"), out
    code, out = run("serve", "--home", str(tmp_path), "--storage-url", "s3://trial/clips", "--workers", "0")
    assert code == 1 and "Traceback" not in out, out
    assert out.strip().splitlines()[-1] == ("Error: s3:// storage needs the s3 extra (boto3 is not installed): "
                                            "scripts/install.sh image, or pip install 'clipforge[s3]'"), out


@pytest.mark.parametrize(("engine", "line", "variable"), [
    ("aiml", 'api_key = "sk-live-123"', "AIMLAPI_API_KEY"),
    ("replicate", 'api_token = "r8_live_123"', "REPLICATE_API_TOKEN"),
    ("fal", 'key = "fal-live-123"', "FAL_KEY"),
])
def test_a_key_written_into_a_hosted_engine_table_is_refused_with_the_api_key_env_hint(
        tmp_path: Path, engine: str, line: str, variable: str):
    """The start-up check (`clipforge models`, as `serve` and `worker`) answers with the hosted engine's own
    hint, not the generic unknown-key message, and never echoes the key."""
    path = tmp_path / "models.toml"
    path.write_text(f'[models."m"]\nengines = ["{engine}"]\n\n[engines.{engine}]\n{line}\n')
    code, out = run("models", "--models-config", str(path))
    key = line.split('"')[1]
    assert code == 1 and out.startswith(f"Error: [engines.{engine}] {line.split()[0]}: a key is never read"), out
    assert f'api_key_env = "{variable}"' in out and "environment variable" in out
    assert "unknown key" not in out and key not in out and "Traceback" not in out
