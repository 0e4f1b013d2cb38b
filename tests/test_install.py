"""scripts/install.sh (the one install path of the Makefile, the Dockerfile and CI), the Makefile targets
over it, the Dockerfile that runs it, and the docs' promise that every snippet's imports are installed by
`make serve`."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install.sh"
HEAVY = {"torch", "triton", "diffusers", "transformers", "accelerate", "playwright", "pytest", "ruff", "moto"}


def plan(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), "--dry-run", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "CLIPFORGE_APT": "0", **(env or {})})


def pip_steps(output: str) -> list[str]:
    return [line[2:] for line in output.splitlines() if line.startswith("+ ") and " -m pip install " in line]


def planned_extras(profile: str) -> set[str]:
    """The extras the script installs for a profile, read from its own plan."""
    [project] = [s for s in pip_steps(plan(profile, "/nonexistent/venv").stdout) if f"{ROOT}[" in s]
    return set(re.search(re.escape(str(ROOT)) + r"\[([^\]]*)\]", project).group(1).split(","))


def closure(extras: set[str]) -> set[str]:
    """Every distribution that installing clipforge with these extras pulls in, resolved through the
    requirements of what is installed here (markers evaluated for this interpreter)."""
    seen: set[str] = set()
    todo = [(r, extras) for r in metadata.requires("clipforge") or []]
    while todo:
        raw, with_extras = todo.pop()
        req = Requirement(raw)
        env_extras = with_extras or {""}
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in env_extras):
            continue
        name = canonicalize_name(req.name)
        if name == "clipforge":
            todo += [(r, set(req.extras)) for r in metadata.requires("clipforge") or []]
            continue
        if name in seen:
            continue
        seen.add(name)
        todo += [(r, set(req.extras)) for r in metadata.requires(req.name) or []]
    return seen


# -- the script ----------------------------------------------------------------------------------
def test_each_profile_plans_its_packages():
    serve = plan("serve", "/nonexistent/venv")
    assert serve.returncode == 0, serve.stderr
    steps = pip_steps(serve.stdout)
    assert steps[0].endswith("-m pip install --quiet --upgrade pip")
    assert steps[-1].endswith(f"-m pip install --quiet -e {ROOT}[examples]")
    assert not any("torch" in s for s in steps)
    assert "+ python3 -m venv /nonexistent/venv" in serve.stdout
    test = pip_steps(plan("test", "/nonexistent/venv").stdout)
    assert test[1].endswith("-m pip install --quiet torch==2.13.0")  # before anything could pull a CUDA build
    assert planned_extras("test") == {"models", "postgres", "s3", "dev", "examples"}
    gpu = pip_steps(plan("gpu", "/nonexistent/venv", env={"TORCH_INDEX_URL": "https://example.org/whl/cu128"}).stdout)
    assert gpu[1].endswith("torch==2.13.0 --index-url https://example.org/whl/cu128")
    assert {"models", "examples"} <= planned_extras("gpu")
    image = pip_steps(plan("--no-editable", "image", "/opt/clipforge").stdout)
    assert image[-1].endswith(f"-m pip install --quiet {ROOT}[postgres,s3]") and len(image) == 2


def test_bad_arguments_are_one_error_line():
    for args, message in ((("bogus",), "Error: unknown profile 'bogus'; profiles: serve, image, gpu, test"),
                          ((), "Error: a profile is required"), (("--fast", "serve"), "Error: unknown option --fast")):
        result = plan(*args)
        assert result.returncode == 2 and result.stderr.startswith(message), result.stderr
    assert "Profiles" in subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True).stdout


def test_serve_and_image_profiles_resolve_to_no_torch_browser_or_test_tools():
    for profile in ("serve", "image"):
        resolved = closure(planned_extras(profile))
        assert {"fastapi", "uvicorn", "av", "httpx"} <= resolved
        heavy = resolved & HEAVY | {n for n in resolved if n.startswith("nvidia-")}
        assert not heavy, (profile, heavy)
    assert {"requests", "openai"} <= closure(planned_extras("serve"))  # what the README's snippets import
    assert {"torch", "diffusers", "pytest", "playwright"} <= closure(planned_extras("test"))


@pytest.fixture
def fake_checkout(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A checkout with the real script and a venv whose python logs its arguments instead of installing."""
    repo, venv, log = tmp_path / "repo", tmp_path / "repo" / ".venv", tmp_path / "pip.log"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, repo / "scripts" / "install.sh")
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f"#!/bin/sh\necho \"$*\" >> {log}\n")
    python.chmod(0o755)
    return repo, venv, log


def install(repo: Path, profile: str) -> str:
    result = subprocess.run(["bash", str(repo / "scripts" / "install.sh"), profile], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "CLIPFORGE_APT": "0"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_a_profile_already_covered_installs_nothing(fake_checkout):
    repo, venv, log = fake_checkout
    install(repo, "test")
    assert calls(log) == ["-m pip install --quiet --upgrade pip", "-m pip install --quiet torch==2.13.0",
                          f"-m pip install --quiet -e {repo}[models,postgres,s3,dev,examples]"]
    assert (venv / ".installed").read_text().split() == ["dev", "examples", "models", "postgres", "s3"]
    assert "'serve' is already installed" in install(repo, "serve")  # make serve after make test: instant
    assert "'gpu' is already installed" in install(repo, "gpu")
    assert len(calls(log)) == 3
    past = time.time() - 60
    os.utime(venv / ".installed", (past, past))  # pyproject.toml changed since: install again
    install(repo, "serve")
    assert calls(log)[-1] == f"-m pip install --quiet -e {repo}[examples]"
    assert (venv / ".installed").read_text().split() == ["examples"]  # a stale stamp vouches for nothing
    install(repo, "image")
    assert (venv / ".installed").read_text().split() == ["examples", "postgres", "s3"]
    assert calls(log)[-1] == f"-m pip install --quiet -e {repo}[postgres,s3]"


# -- the Makefile ------------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_targets_go_through_the_script():
    def dry(*args: str) -> str:
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}  # under make test
        return subprocess.run(["make", "-n", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=30, env=env).stdout

    assert dry("serve").splitlines() == ["PYTHON=python3 bash scripts/install.sh serve .venv",
                                         ".venv/bin/clipforge serve --host 127.0.0.1 --port 8000"]
    assert dry("serve", "HOST=0.0.0.0", "PORT=9000").splitlines()[-1].endswith("--host 0.0.0.0 --port 9000")
    assert dry("test").splitlines()[0] == "PYTHON=python3 bash scripts/install.sh test .venv"
    assert dry("install-gpu").splitlines() == ["PYTHON=python3 bash scripts/install.sh gpu .venv"]


# -- the Dockerfile ----------------------------------------------------------------------------------
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_the_dockerfile_installs_with_the_script_by_profile():
    steps = dockerfile()
    args = dict(a.split("=", 1) for op, a in steps if op == "ARG" and "=" in a)
    assert args["BASE_IMAGE"].startswith("python:3.11") and args["PROFILE"] == "image"  # CPU by default
    assert steps[[op for op, _ in steps].index("FROM")] == ("FROM", "${BASE_IMAGE}")
    [run] = [a for op, a in steps if op == "RUN" and "install.sh" in a]
    assert run.startswith('bash scripts/install.sh --no-editable "$PROFILE" /opt/clipforge')
    for profile in ("image", "gpu"):  # the profiles the image is built with exist in the script
        assert plan("--no-editable", profile, "/opt/clipforge").returncode == 0
    copied = {source for op, a in steps if op == "COPY" for source in a.split()[:-1]}
    assert {"pyproject.toml", "README.md", "scripts/install.sh", "src"} <= copied  # what the script installs
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert {"!pyproject.toml", "!README.md", "!scripts/install.sh", "!src/"} <= set(ignore)
    user = [a for op, a in steps if op == "USER"][-1]
    assert re.fullmatch(r"\d+:\d+", user) and not user.startswith("0:")  # numeric: runAsNonRoot can check it
    assert "/opt/clipforge/bin" in next(a for op, a in steps if op == "ENV" and "PATH=" in a)


def test_the_compose_file_builds_the_image():
    text = (ROOT / "docs" / "deployment.md").read_text()
    [compose] = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "services:" in b]
    services = {name: s for name, s in compose["services"].items() if "clipforge" in str(s.get("image", ""))}
    assert set(services) == {"migrate", "api", "worker"}
    for name, service in services.items():
        assert service["build"]["context"] == "." and (ROOT / "Dockerfile").exists(), name
    assert services["worker"]["build"]["args"]["PROFILE"] == "gpu"


# -- the docs' snippets ------------------------------------------------------------------------------
def snippet_imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```python\n(.*?)```", doc.read_text(), re.S):
            for node in ast.walk(ast.parse(block)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
                found.setdefault(doc.name, set()).update(n.split(".")[0] for n in names)
    return found


def test_every_snippet_imports_only_what_make_serve_installs():
    resolved = closure(planned_extras("serve")) | {"clipforge"}
    providers = metadata.packages_distributions()
    imports = snippet_imports()
    assert {"requests", "openai", "clipforge"} <= set().union(*imports.values())
    for doc, modules in imports.items():
        for module in modules - set(sys.stdlib_module_names):
            dists = {canonicalize_name(d) for d in providers.get(module, [])}
            assert dists & resolved, f"{doc}: `import {module}` is not installed by make serve"
