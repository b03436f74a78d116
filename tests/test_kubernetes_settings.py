"""The Kubernetes section of the settings: read only for CONTAINER_ENV=kubernetes, validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from pfcon.compute import build_backend
from pfcon.settings import KubernetesSettings, SettingsError, load_settings

K8S = {
    "APPLICATION_MODE": "development",
    "CONTAINER_ENV": "kubernetes",
    "COMPUTE_VOLUME_TYPE": "kubernetes_pvc",
    "VOLUME_NAME": "pfcon-storebase",
}


def test_defaults() -> None:
    k = load_settings(K8S).kubernetes
    assert k.namespace == "default"
    assert (k.node_selector, k.image_pull_secrets) == ({}, ())
    assert (k.ttl_seconds, k.deadline_seconds) == (86400, None)
    assert not k.in_cluster and k.kubeconfig and k.kubeconfig.endswith(".kube/config")


def test_everything_is_parsed() -> None:
    k = load_settings(
        {
            **K8S,
            "JOB_NAMESPACE": "chris-jobs",
            "NODE_SELECTOR": "kubernetes.io/arch=amd64, gpu=nvidia-a100 ,empty=",
            "IMAGE_PULL_SECRETS": "regcred, other.secret",
            "JOB_TTL_SECONDS": "600",
            "JOB_DEADLINE_SECONDS": "7200",
            "KUBERNETES_SERVICE_HOST": "10.96.0.1",
            "KUBERNETES_SERVICE_PORT": "443",
            "KUBECONFIG": "/etc/pfcon/kubeconfig",
        }
    ).kubernetes
    assert k.namespace == "chris-jobs"
    assert k.node_selector == {"kubernetes.io/arch": "amd64", "gpu": "nvidia-a100", "empty": ""}
    assert k.image_pull_secrets == ("regcred", "other.secret")
    assert (k.ttl_seconds, k.deadline_seconds) == (600, 7200)
    assert k.in_cluster and (k.service_host, k.service_port) == ("10.96.0.1", "443")
    assert k.kubeconfig == "/etc/pfcon/kubeconfig"


def test_zero_means_no_ttl_and_no_deadline() -> None:
    k = load_settings({**K8S, "JOB_TTL_SECONDS": "0", "JOB_DEADLINE_SECONDS": "0"}).kubernetes
    assert (k.ttl_seconds, k.deadline_seconds) == (None, None)


def test_not_read_for_other_engines() -> None:
    """A docker deployment with leftover Kubernetes variables is not refused for them."""
    settings = load_settings({"APPLICATION_MODE": "development", "STOREBASE": "/x", "NODE_SELECTOR": "!!bad"})
    assert settings.kubernetes == KubernetesSettings()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("JOB_NAMESPACE", "Chris_Jobs"),
        ("JOB_NAMESPACE", "x" * 64),
        ("NODE_SELECTOR", "novalue"),
        ("NODE_SELECTOR", "bad key=v"),
        ("NODE_SELECTOR", "k=bad value"),
        ("NODE_SELECTOR", "k=" + "v" * 64),
        ("IMAGE_PULL_SECRETS", "good,Bad_Name"),
        ("JOB_TTL_SECONDS", "-1"),
        ("JOB_TTL_SECONDS", "a day"),
        ("JOB_DEADLINE_SECONDS", "-5"),
        ("VOLUME_NAME", "Not A PVC"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({**K8S, variable: value})
    assert error.value.variable == variable


@pytest.mark.parametrize(
    "volume",
    [
        {"COMPUTE_VOLUME_TYPE": "host", "STOREBASE": "/x", "VOLUME_NAME": ""},
        {"COMPUTE_VOLUME_TYPE": "docker_local_volume"},
    ],
)
def test_jobs_need_the_pvc_volume_type(volume: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({**K8S, **volume})
    assert error.value.variable == "COMPUTE_VOLUME_TYPE"


def test_the_pvc_is_required() -> None:
    env = dict(K8S)
    del env["VOLUME_NAME"]
    with pytest.raises(SettingsError) as error:
        load_settings(env)
    assert error.value.variable == "VOLUME_NAME"


def test_job_labels_must_be_kubernetes_labels(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as error:
        build_backend(load_settings({**K8S, "JOB_LABELS": "team=a b", "KUBECONFIG": str(tmp_path / "none")}))
    assert error.value.variable == "JOB_LABELS"


def test_a_missing_kubeconfig_stops_the_service_at_start(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as error:
        build_backend(load_settings({**K8S, "KUBECONFIG": str(tmp_path / "none")}))
    assert error.value.variable == "KUBECONFIG"
