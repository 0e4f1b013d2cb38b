"""deploy/kubernetes, rendered per overlay and checked offline: every object against the Kubernetes
OpenAPI schemas (kubernetes-validate) and KEDA's CRD schema, then the properties a cluster would only
show at run time (GPU placement, probes, shutdown grace, secrets, autoscaling on the right engines)."""

from __future__ import annotations

import copy
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from clipforge.core.routing import parse_routing
from kustomize_lite import pod_containers, pod_spec, render

ROOT = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
OVERLAYS = ["cpu", "gpu", "hosted"]
KUBERNETES_VERSION = "1.37.0"  # the newest schemas kubernetes-validate 1.37 bundles
KEDA_CRD = Path(__file__).parent / "data" / "keda.sh_scaledobjects-v2.20.2.yaml"
DEFAULT_SHUTDOWN_GRACE = 30.0  # clipforge's default CLIPFORGE_SHUTDOWN_GRACE_SECONDS

Obj = dict[str, Any]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Obj]]:
    return request.param, render(ROOT / "overlays" / request.param)


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[Obj], kind: str, name: str) -> Obj:
    [obj] = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    return obj


def workers(objects: list[Obj]) -> list[Obj]:
    return [d for d in of_kind(objects, "Deployment") if main_container(d)["args"][1] == "worker"]


def main_container(obj: Obj) -> Obj:
    return pod_spec(obj)["containers"][0]


def option(args: list[str], name: str, default: str | None = None) -> str | None:
    return args[args.index(name) + 1] if name in args else default


def env_value(objects: list[Obj], container: Obj, name: str) -> str | None:
    """A variable's literal value in a container: its own `env`, else the ConfigMaps it takes whole."""
    for var in container.get("env", []):
        if var["name"] == name:
            return var.get("value")
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            value = named(objects, "ConfigMap", source["configMapRef"]["name"])["data"].get(name)
            if value is not None:
                return value
    return None


def routing_of(objects: list[Obj]):
    return parse_routing(tomllib.loads(named(objects, "ConfigMap", "clipforge-models")["data"]["models.toml"]))


def query_engines(query: str, gauge: str) -> set[str]:
    match = re.search(gauge + r'\{engine=~"([^"]+)"\}', query)
    assert match, f"{gauge} not in {query!r}"
    return set(match.group(1).split("|"))


# -- schemas -------------------------------------------------------------------------------------
def strict(schema: Any) -> Any:
    """A CRD's structural schema with unknown fields refused (the API server would prune them silently,
    hiding a misspelt field)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def keda_validator() -> jsonschema.Draft7Validator:
    [crd] = [d for d in yaml.safe_load_all(KEDA_CRD.read_text()) if d]
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))


def test_every_object_is_valid_for_kubernetes_and_keda(overlay, keda_validator):
    name, objects = overlay
    extra = render(ROOT / "overlays" / "gpu" / "weights") if name == "gpu" else []
    for obj in objects + extra:
        if obj["apiVersion"].startswith("keda.sh/"):
            errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in keda_validator.iter_errors(obj)]
            assert not errors, (obj["metadata"]["name"], errors)
        else:
            kubernetes_validate.validate(copy.deepcopy(obj), KUBERNETES_VERSION, strict=True)


def test_the_schemas_catch_mistakes(keda_validator):
    """Both checks bite: a misspelt field and a wrong type are errors."""
    [worker] = workers(render(ROOT / "overlays" / "gpu"))
    typo = copy.deepcopy(worker)
    typo["spec"]["template"]["spec"]["terminationGracePeriod"] = 660
    with pytest.raises(kubernetes_validate.ValidationError, match="terminationGracePeriod"):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)
    [scaled] = of_kind(render(ROOT / "overlays" / "gpu"), "ScaledObject")
    assert not list(keda_validator.iter_errors(scaled))
    typo = copy.deepcopy(scaled)
    typo["spec"]["minReplicas"] = 0
    assert list(keda_validator.iter_errors(typo))
    wrong = copy.deepcopy(scaled)
    wrong["spec"]["triggers"][0]["metadata"]["threshold"] = 1  # trigger metadata values are strings
    assert list(keda_validator.iter_errors(wrong))


# -- GPUs --------------------------------------------------------------------------------------------
def gpus(container: Obj) -> set[str]:
    res = container.get("resources", {})
    return {res.get(part, {}).get("nvidia.com/gpu") for part in ("requests", "limits")} - {None}


def test_gpus_are_requested_by_gpu_workers_only(overlay):
    name, objects = overlay
    for obj in objects:
        for container in pod_containers(obj):
            is_ltx2_worker = obj in workers(objects) and "ltx2" in option(container["args"], "--engines", "")
            assert gpus(container) == ({"1"} if is_ltx2_worker else set()), (name, obj["metadata"]["name"])
    gpu_workers = [w for w in workers(objects) if gpus(main_container(w))]
    assert len(gpu_workers) == (1 if name == "gpu" else 0)
    for worker in gpu_workers:  # scheduled on GPU nodes, tolerated there
        spec = pod_spec(worker)
        assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]


def test_gpu_workers_read_weights_from_the_volume_and_never_download():
    objects = render(ROOT / "overlays" / "gpu")
    [worker] = workers(objects)
    container, spec = main_container(worker), pod_spec(worker)
    weights = {v["name"]: v for v in spec["volumes"]}["weights"]
    assert weights["persistentVolumeClaim"] == {"claimName": "clipforge-weights", "readOnly": True}
    assert {"name": "weights", "mountPath": "/models", "readOnly": True} in container["volumeMounts"]
    assert env_value(objects, container, "HF_HUB_OFFLINE") == "1"
    assert routing_of(objects).engine_config("ltx2")["path"].startswith("/models/")
    named(objects, "PersistentVolumeClaim", "clipforge-weights")
    [fetch] = render(ROOT / "overlays" / "gpu" / "weights")
    fetch_container = main_container(fetch)
    assert fetch_container["args"][:5] == ["hf", "download", "Lightricks/LTX-2", "--local-dir",
                                           routing_of(objects).engine_config("ltx2")["path"]]
    claim = [v for v in pod_spec(fetch)["volumes"] if "persistentVolumeClaim" in v][0]
    assert claim["persistentVolumeClaim"]["claimName"] == "clipforge-weights"


# -- probes, grace, migrations -------------------------------------------------------------------------
def test_api_probes_readyz_and_healthz_on_its_port(overlay):
    _, objects = overlay
    api = named(objects, "Deployment", "clipforge-api")
    container = main_container(api)
    assert option(container["args"], "--workers") == "0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == int(option(container["args"], "--port"))
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_workers_outlast_their_shutdown_grace(overlay):
    _, objects = overlay
    for worker in workers(objects):
        grace = float(env_value(objects, main_container(worker), "CLIPFORGE_SHUTDOWN_GRACE_SECONDS")
                      or DEFAULT_SHUTDOWN_GRACE)
        # the job's grace, then handing it back and exiting, before the kubelet's SIGKILL
        assert pod_spec(worker)["terminationGracePeriodSeconds"] >= grace + 10, worker["metadata"]["name"]


def test_migrations_run_before_the_api_serves(overlay):
    _, objects = overlay
    api = named(objects, "Deployment", "clipforge-api")
    assert [c["args"] for c in pod_spec(api)["initContainers"]] == [["clipforge", "migrate"]]
    job = named(objects, "Job", "clipforge-migrate")
    assert main_container(job)["args"] == ["clipforge", "migrate"]


# -- secrets -----------------------------------------------------------------------------------------
SECRET_NAME = re.compile(r"(KEY|SECRET|PASSWORD|TOKEN|DATABASE_URL)", re.I)
SECRET_VALUE = re.compile(r"(://[^/\s:@]+:[^/\s@]+@|AKIA[0-9A-Z]{12}|sk-[A-Za-z0-9]{16}|whsec_|cf-[A-Za-z0-9_-]{20})")


def test_no_literal_secrets(overlay):
    _, objects = overlay
    assert of_kind(objects, "Secret") == []
    for obj in objects:
        for container in pod_containers(obj):
            for var in container.get("env", []):
                if SECRET_NAME.search(var["name"]) and var["name"] != "CLIPFORGE_KEYS_FILE":
                    assert "secretKeyRef" in var.get("valueFrom", {}), (obj["metadata"]["name"], var)
            for source in container.get("envFrom", []):
                assert set(source) <= {"configMapRef", "secretRef"}
    for config in of_kind(objects, "ConfigMap"):
        for key, value in config["data"].items():
            assert not SECRET_NAME.search(key) and not SECRET_VALUE.search(value), (key, value)
    assert not SECRET_VALUE.search(yaml.safe_dump_all(objects))
    secret_refs = {ref["secretKeyRef"]["name"] for obj in objects for c in pod_containers(obj)
                   for ref in (v.get("valueFrom", {}) for v in c.get("env", [])) if "secretKeyRef" in ref}
    assert secret_refs == {"clipforge"}  # the one Secret docs/kubernetes.md tells the operator to create


# -- autoscaling --------------------------------------------------------------------------------------
def test_each_worker_deployment_scales_on_the_queue_of_the_engines_it_serves(overlay):
    name, objects = overlay
    routing = routing_of(objects)
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in of_kind(objects, "ScaledObject")}
    assert sorted(scaled) == sorted(w["metadata"]["name"] for w in workers(objects))
    for worker in workers(objects):
        args = main_container(worker)["args"]
        engines = set(option(args, "--engines").split(","))
        assert engines <= set(routing.engine_names)  # `clipforge worker --engines` refuses unrouted engines
        spec = scaled[worker["metadata"]["name"]]["spec"]
        [trigger] = spec["triggers"]
        assert trigger["type"] == "prometheus"
        query = trigger["metadata"]["query"]
        assert query_engines(query, "clipforge_engine_queue_depth") == engines
        assert query_engines(query, "clipforge_engine_running_jobs") == engines
        assert trigger["metadata"]["threshold"] == option(args, "--concurrency", "1")  # jobs one pod runs at once
        assert 1 <= spec["maxReplicaCount"] <= 16
        if spec["minReplicaCount"] == 0:
            # scaled to zero: the api must queue jobs for these engines with no worker up
            assert engines <= routing.autoscaled, name
            grace = float(env_value(objects, main_container(worker), "CLIPFORGE_SHUTDOWN_GRACE_SECONDS"))
            assert spec["cooldownPeriod"] >= grace  # outlasts a typical job
    assert (name == "gpu") == any(s["spec"]["minReplicaCount"] == 0 for s in scaled.values())
    for deployment in of_kind(objects, "Deployment"):  # autoscaled: an apply must not reset the count
        assert "replicas" not in deployment["spec"], deployment["metadata"]["name"]


def evaluate(query: str, scrape: str) -> float:
    """The ScaledObject's query on one api replica's /metrics: each gauge summed over the engines the
    regex names (with one replica, `max by (engine)` is the value itself)."""
    from prometheus_client.parser import text_string_to_metric_families

    values = {(s.name, s.labels.get("engine")): s.value for f in text_string_to_metric_families(scrape)
              for s in f.samples}
    total = 0.0
    for gauge, pattern in re.findall(r'(clipforge_\w+)\{engine=~"([^"]+)"\}', query):
        matched = [v for (name, engine), v in values.items() if name == gauge and engine
                   and re.fullmatch(pattern, engine)]
        assert matched, f"{gauge}{{engine=~{pattern!r}}} matches nothing /metrics serves"
        total += sum(matched)
    return total


@pytest.mark.parametrize("overlay_name", OVERLAYS)
def test_the_scaling_query_counts_the_work_the_api_reports(overlay_name: str, tmp_path: Path):
    """With the overlay's own models.toml: idle is 0 (never an empty result), each job queued for the
    worker's engines, with no worker up, counts 1."""
    from fastapi.testclient import TestClient

    from clipforge.api.app import create_app
    from clipforge.core.job import Job, new_job_id
    from clipforge.core.settings import Settings
    from clipforge.jobs.memory import MemoryJobStore

    objects = render(ROOT / "overlays" / overlay_name)
    [scaled] = of_kind(objects, "ScaledObject")
    query = scaled["spec"]["triggers"][0]["metadata"]["query"]
    [worker] = workers(objects)
    engines = option(main_container(worker)["args"], "--engines").split(",")
    config = tmp_path / "models.toml"
    config.write_text(named(objects, "ConfigMap", "clipforge-models")["data"]["models.toml"])
    store = MemoryJobStore()
    app = create_app(Settings(home=tmp_path, api_keys=("k1",), models_config=config), store=store)
    with TestClient(app) as client:
        assert evaluate(query, client.get("/metrics").text) == 0
        for engine in engines + engines[:1]:
            store.create(Job(id=new_job_id("m"), owner="k1", model="m", engine=engine, params={}))
        store.claim("w1", engines[:1], 60)
        assert evaluate(query, client.get("/metrics").text) == len(engines) + 1  # queued + running


def test_api_autoscaler_and_disruption_budgets_target_real_pods(overlay):
    _, objects = overlay
    hpa = named(objects, "HorizontalPodAutoscaler", "clipforge-api")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "clipforge-api"}
    assert {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"} == {
        "clipforge_http_requests_per_second"}
    assert hpa["spec"]["minReplicas"] >= 2
    deployments = of_kind(objects, "Deployment")
    for selector_owner in of_kind(objects, "PodDisruptionBudget") + of_kind(objects, "Service"):
        selector = selector_owner["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        matching = [d for d in deployments if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matching) == 1, selector_owner["metadata"]["name"]
    ingress = named(objects, "Ingress", "clipforge")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = named(objects, "Service", backend["name"])
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


# -- hardening ---------------------------------------------------------------------------------------
def test_pods_run_as_non_root_with_a_read_only_root_and_writable_scratch_only(overlay):
    _, objects = overlay
    for obj in [o for o in objects if pod_spec(o) is not None]:
        spec = pod_spec(obj)
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
        assert spec["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in pod_containers(obj):
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["requests"] and container["resources"]["limits"]
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]["name"]] and "emptyDir" in volumes[mounts["/data"]["name"]]
            writable = {p for p, m in mounts.items() if not m.get("readOnly")}
            assert writable <= {"/tmp", "/data"} or obj["metadata"]["name"] == "clipforge-fetch-weights"


# -- images ------------------------------------------------------------------------------------------
def test_the_image_name_and_tag_come_from_the_overlay(tmp_path: Path):
    copy_root = tmp_path / "kubernetes"
    shutil.copytree(ROOT, copy_root)
    kustomization = copy_root / "overlays" / "gpu" / "kustomization.yaml"
    spec = yaml.safe_load(kustomization.read_text())
    repo = "registry.example.com/team/clipforge"
    spec["images"] = [{"name": "clipforge", "newName": repo, "newTag": "1.2.3"},
                      {"name": "clipforge-gpu", "newName": repo, "newTag": "1.2.3-cuda"}]
    kustomization.write_text(yaml.safe_dump(spec))
    objects = render(copy_root / "overlays" / "gpu")
    images = {(o["metadata"]["name"], c["name"]): c["image"] for o in objects for c in pod_containers(o)}
    assert images == {("clipforge-migrate", "migrate"): "registry.example.com/team/clipforge:1.2.3",
                      ("clipforge-api", "migrate"): "registry.example.com/team/clipforge:1.2.3",
                      ("clipforge-api", "api"): "registry.example.com/team/clipforge:1.2.3",
                      ("clipforge-worker", "worker"): "registry.example.com/team/clipforge:1.2.3-cuda"}
    for overlay_name in OVERLAYS:  # as shipped: every container names an image the overlay sets
        for obj in render(ROOT / "overlays" / overlay_name):
            for container in pod_containers(obj):
                assert re.fullmatch(r"clipforge:0\.1\.0(-cuda)?", container["image"]), container["image"]


# -- docs/kubernetes.md ------------------------------------------------------------------------------
DOC = Path(__file__).resolve().parents[2] / "docs" / "kubernetes.md"


def referenced_secrets(objects: list[Obj]) -> dict[str, set[str]]:
    """Secret name -> the keys the manifests read from it (empty: read whole)."""
    refs: dict[str, set[str]] = {}
    for obj in objects:
        for container in pod_containers(obj):
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.setdefault(ref["name"], set()).add(ref["key"])
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    refs.setdefault(source["secretRef"]["name"], set())
        for volume in (pod_spec(obj) or {}).get("volumes", []):
            if "secret" in volume:
                refs.setdefault(volume["secret"]["secretName"], set()).update(
                    i["key"] for i in volume["secret"].get("items", []))
        for tls in obj["spec"].get("tls", []) if obj["kind"] == "Ingress" else []:
            refs.setdefault(tls["secretName"], set())
    return refs


def test_the_docs_tell_how_to_create_every_secret_the_manifests_read():
    text = DOC.read_text()
    objects = [o for name in OVERLAYS + ["gpu/weights"] for o in render(ROOT / "overlays" / name)]
    refs = referenced_secrets(objects)
    assert set(refs) == {"clipforge", "clipforge-tls", "clipforge-hosted", "clipforge-hf"}
    for name, keys in refs.items():
        command = re.search(rf"kubectl -n clipforge create secret \w+ {name} (.*?)(?:\n(?! )|$)", text, re.S)
        assert command, f"no `create secret` for {name}"
        for key in keys:
            assert f"{key}=" in command.group(1), (name, key)


def test_the_documented_adapter_rule_yields_the_hpa_metric():
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    [rule] = [r for b in blocks for r in yaml.safe_load(b) if "seriesQuery" in r]
    series = re.match(r"(\w+)\{", rule["seriesQuery"]).group(1)
    assert series == "clipforge_http_requests_total"
    as_name = re.sub(rule["name"]["matches"], rule["name"]["as"].replace("${1}", r"\1"), series)
    hpa = named(render(ROOT / "overlays" / "cpu"), "HorizontalPodAutoscaler", "clipforge-api")
    assert as_name in {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    documented = tomllib.loads(re.search(r"```toml\n(\[autoscale\].*?)```", DOC.read_text(), re.S).group(1))
    assert documented["autoscale"]["engines"] == sorted(routing_of(render(ROOT / "overlays" / "gpu")).autoscaled)


def test_every_clipforge_command_in_the_manifests_parses(overlay):
    """Option names and values as the CLI reads them (a misspelt flag would crash-loop the pod)."""
    from clipforge.cli import main

    _, objects = overlay
    commands = [c["args"] for o in objects for c in pod_containers(o) if c["args"][0] == "clipforge"]
    assert {a[1] for a in commands} >= {"serve", "worker", "migrate"}
    for args in commands:
        command = main.commands[args[1]]
        with command.make_context(args[1], list(args[2:])) as ctx:
            assert ctx.params is not None
