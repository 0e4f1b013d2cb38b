"""The test-side kustomize renderer: its merge rules, and its output against `kubectl kustomize`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kustomize_lite import KustomizeError, merge, render

ROOT = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
OVERLAYS = ["cpu", "gpu", "gpu/weights", "hosted"]


def keyed(objects: list[dict]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_strategic_merge_merges_named_lists_and_replaces_others():
    base = {"containers": [{"name": "a", "args": ["x", "y"], "env": [{"name": "A", "value": "1"},
                                                                     {"name": "B", "value": "2"}]}],
            "tolerations": [{"key": "k"}], "drop": 1}
    env = [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]
    patch = {"containers": [{"name": "a", "args": ["z"], "env": env}],
             "tolerations": [{"key": "gpu"}], "drop": None}
    assert merge(base, patch, strategic=True) == {
        "containers": [{"name": "a", "args": ["z"], "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"},
                                                            {"name": "A", "value": "1"}]}],
        "tolerations": [{"key": "gpu"}]}
    assert merge(base, patch, strategic=False)["containers"] == patch["containers"]  # JSON merge patch: replaced


def test_unsupported_kustomization_fields_are_refused(tmp_path: Path):
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({"resources": [], "configMapGenerator": []}))
    with pytest.raises(KustomizeError, match="unsupported fields"):
        render(tmp_path)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its built-in kustomize) is not installed")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_renderer_matches_kubectl_kustomize(overlay: str):
    built = subprocess.run(["kubectl", "kustomize", str(ROOT / "overlays" / overlay)], capture_output=True,
                           text=True, timeout=120, check=True).stdout
    theirs = keyed([d for d in yaml.safe_load_all(built) if d])
    ours = keyed(render(ROOT / "overlays" / overlay))
    assert sorted(ours) == sorted(theirs)
    for key, obj in theirs.items():
        assert ours[key] == obj, key
