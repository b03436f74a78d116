"""The manifests under kubernetes/ that deploy pfcon: valid, least-privileged, consistent.

Every document is validated strictly against the official schemas (``kubernetes-validate``).
The Role is checked against the API calls the backend really makes (recorded by the in-test
API server during a job's lifecycle): it must allow each of them and nothing more.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests.k8s_fixtures are redefined as arguments)
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pfcon.errors import BackendUnavailable
from pfcon.settings import load_settings
from tests.contract import make_spec
from tests.k8s_fixtures import api_server, cluster, k8s_backend, kubeconfig, template  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent / "kubernetes"
K8S_VERSION = "1.37.0"


def documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(ROOT.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs.extend((path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def one(kind: str) -> dict[str, Any]:
    (doc,) = [doc for _, doc in documents() if doc["kind"] == kind]
    return doc


@pytest.mark.parametrize(("name", "doc"), documents(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_every_document_passes_the_official_schema_strictly(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_all_parts_are_there_and_listed_in_the_kustomization() -> None:
    kinds = sorted(doc["kind"] for _, doc in documents())
    assert kinds == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "PersistentVolumeClaim",
            "Deployment",
            "Service",
        ]
    )
    kustomization = yaml.safe_load((ROOT / "kustomization.yaml").read_text())
    files = {p.name for p in ROOT.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert kustomization["namespace"] == one("Namespace")["metadata"]["name"]


def _verbs_used(requests) -> set[tuple[str, str, str]]:
    """(api group, resource, verb) of each request the in-test API server saw."""
    used = set()
    for request in requests:
        path = request.path.rstrip("/")
        if path == "/version":
            continue  # a non-resource URL every authenticated user may read (system:discovery)
        if request.query.get("watch") == ["true"]:
            resource = "jobs" if "/jobs" in path else "pods"
            used.add(("batch" if resource == "jobs" else "", resource, "watch"))
        elif m := re.fullmatch(r"/apis/batch/v1/namespaces/[^/]+/jobs(/[^/]+)?", path):
            verb = {"POST": "create", "DELETE": "delete", "PATCH": "patch"}.get(
                request.method, "get" if m[1] else "list"
            )
            used.add(("batch", "jobs", verb))
        elif re.fullmatch(r"/api/v1/namespaces/[^/]+/pods", path):
            used.add(("", "pods", "list"))
        elif re.fullmatch(r"/api/v1/namespaces/[^/]+/pods/[^/]+/log", path):
            used.add(("", "pods/log", "get"))
        else:
            raise AssertionError(f"unexpected API call {request.method} {path}")
    return used


def test_the_role_allows_exactly_what_the_backend_calls(
    k8s_backend, cluster, jid: str, tmp_path: Path
) -> None:
    k8s_backend.ping()
    spec = make_spec(jid, tmp_path, ("true",))
    k8s_backend.validate(spec)
    k8s_backend.submit(spec)
    cluster.write_logs(jid, "hello\n")
    cluster.finish(jid)
    k8s_backend.snapshot(jid, 10)
    k8s_backend.stop(jid)  # DELETE with REMOVE_JOBS=no
    k8s_backend.poll_all([jid])  # the status feed's full read, then its watches
    with pytest.raises(BackendUnavailable, match="501"):  # the in-test server serves none
        list(k8s_backend.events(time.time(), time.time() + 1))
    k8s_backend.remove(jid)
    used = _verbs_used(cluster.requests)
    granted = {
        (group, resource, verb)
        for rule in one("Role")["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert used == granted


def test_rbac_is_namespaced_and_bound_to_pfcons_account() -> None:
    kinds = {doc["kind"] for _, doc in documents()}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    binding, account = one("RoleBinding"), one("ServiceAccount")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "pfcon-jobs",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"]}]
    pod = one("Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_the_deployment_configures_a_valid_kubernetes_pfcon() -> None:
    deployment = one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    for secret in ("SECRET_KEY", "PFCON_USER", "PFCON_PASSWORD"):
        assert env[secret]["valueFrom"]["secretKeyRef"] == {"name": "pfcon-credentials", "key": secret}
        assert "value" not in env[secret]
    plain = {name: e["value"] for name, e in env.items() if "value" in e}
    assert plain["CONTAINER_ENV"] == "kubernetes" and plain["COMPUTE_VOLUME_TYPE"] == "kubernetes_pvc"
    assert plain["VOLUME_NAME"] == one("PersistentVolumeClaim")["metadata"]["name"]
    assert env["JOB_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert mounts[next(iter(claims))] == plain["STOREBASE_MOUNT"]
    # what pfcon would read at start in that pod (secrets and the pod's namespace filled in)
    settings = load_settings(
        {
            **plain,
            "SECRET_KEY": "k" * 32,
            "PFCON_USER": "u",
            "PFCON_PASSWORD": "p",
            "JOB_NAMESPACE": "pfcon",
            "KUBERNETES_SERVICE_HOST": "10.96.0.1",
            "KUBERNETES_SERVICE_PORT": "443",
        }
    )
    assert settings.container_env == "kubernetes" and settings.kubernetes.in_cluster
    assert (
        settings.container_user is not None
        and settings.container_user.uid.low == pod["securityContext"]["runAsUser"]
    )


def test_the_deployment_is_probed_limited_and_locked_down() -> None:
    pod = one("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["ports"] == [{"name": "http", "containerPort": 5005}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/api/v1/health/", "port": "http"}
    assert set(container["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_the_service_reaches_the_pods() -> None:
    service, deployment = one("Service"), one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["ports"] == [{"name": "http", "port": 5005, "targetPort": "http"}]
