"""A renderer for the subset of kustomize that deploy/kubernetes uses, so tests need no kustomize binary.

Supported in a `kustomization.yaml`: `resources` (YAML files and directories holding a kustomization),
`namespace`, `images` (`name` -> `newName` / `newTag`) and `patches` with a `path` to a patch that names
its target by kind and metadata.name. Patches to built-in kinds are strategic merge patches: maps merge,
`null` deletes a key, lists of containers, env vars, volumes and the like merge by their merge key
(patch items first, then the base's other items, as kustomize orders them) and other lists are
replaced. Patches to custom resources (KEDA's ScaledObject) are JSON merge patches: lists are replaced.
Anything else in a kustomization is refused, so the manifests cannot drift into what this does not
render. tests/deploy/test_kustomize.py checks it against `kubectl kustomize` where kubectl is installed.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding",
                  "CustomResourceDefinition", "PriorityClass", "IngressClass"}
BUILTIN_GROUPS = {"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1"}
# field name -> the key its list items merge on (Kubernetes' patchMergeKey for these fields)
MERGE_KEYS = {"containers": "name", "initContainers": "name", "volumes": "name", "env": "name",
              "volumeMounts": "mountPath", "imagePullSecrets": "name", "ports": "containerPort"}

Obj = dict[str, Any]


class KustomizeError(ValueError):
    pass


def render(directory: Path) -> list[Obj]:
    """The objects `kustomize build directory` would print (order aside)."""
    directory = Path(directory)
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text()) or {}
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{directory}/kustomization.yaml: unsupported fields {sorted(unknown)}")
    objects: list[Obj] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        objects += render(path) if path.is_dir() else load_objects(path)
    for patch in spec.get("patches", []):
        apply_patch(objects, load_objects(directory / patch["path"])[0])
    if "namespace" in spec:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = spec["namespace"]
    for image in spec.get("images", []):
        set_image(objects, image)
    return objects


def load_objects(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(Path(path).read_text()) if doc]


def apply_patch(objects: list[Obj], patch: Obj) -> None:
    matches = [o for o in objects if o["kind"] == patch["kind"] and o["metadata"]["name"] == patch["metadata"]["name"]]
    if len(matches) != 1:
        raise KustomizeError(f"patch target {patch['kind']}/{patch['metadata']['name']}: {len(matches)} matches")
    strategic = patch.get("apiVersion") in BUILTIN_GROUPS
    merged = merge(matches[0], patch, strategic)
    matches[0].clear()
    matches[0].update(merged)


def merge(base: Any, patch: Any, strategic: bool, field: str = "") -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = merge(out[key], value, strategic, key) if key in out else copy.deepcopy(value)
        return out
    if strategic and isinstance(base, list) and isinstance(patch, list) and MERGE_KEYS.get(field):
        return merge_list(base, patch, MERGE_KEYS[field])
    return copy.deepcopy(patch)


def merge_list(base: list[Obj], patch: list[Obj], key: str) -> list[Obj]:
    originals = {item[key]: item for item in base}
    merged = [merge(originals[item[key]], item, True) if item[key] in originals else copy.deepcopy(item)
              for item in patch]
    patched = {item[key] for item in patch}
    return merged + [copy.deepcopy(item) for item in base if item[key] not in patched]


def set_image(objects: list[Obj], image: dict[str, str]) -> None:
    for obj in objects:
        for container in pod_containers(obj):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                new_name, new_tag = image.get("newName", name), image.get("newTag", tag)
                container["image"] = f"{new_name}:{new_tag}" if new_tag else new_name


def pod_spec(obj: Obj) -> Obj | None:
    """The pod spec of a Deployment or Job (None for other kinds)."""
    if obj["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return obj["spec"]["template"]["spec"]
    return None


def pod_containers(obj: Obj) -> list[Obj]:
    spec = pod_spec(obj)
    return [] if spec is None else spec.get("initContainers", []) + spec.get("containers", [])
