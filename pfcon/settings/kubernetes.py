"""CONTAINER_ENV=kubernetes: the Jobs' namespace, node selector and pull secrets.

Names are checked against Kubernetes' own rules here, so a typo stops the service at start;
:func:`is_label_key` and :func:`is_label_value` also check JOB_LABELS when the backend is built.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pfcon.settings.env import Env, SettingsError

# Kubernetes name rules (RFC 1123 label and subdomain; label values)
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


@dataclass(frozen=True)
class KubernetesSettings:
    """CONTAINER_ENV=kubernetes: where and how jobs run as batch/v1 Jobs.

    ``in_cluster`` is decided once from the environment Kubernetes gives every pod
    (KUBERNETES_SERVICE_HOST); otherwise the client reads ``kubeconfig``.
    """

    namespace: str = "default"
    node_selector: Mapping[str, str] = field(default_factory=dict)
    image_pull_secrets: tuple[str, ...] = ()
    ttl_seconds: int | None = 86400
    deadline_seconds: int | None = None
    in_cluster: bool = False
    service_host: str | None = None
    service_port: str | None = None
    kubeconfig: str | None = None


def read_kubernetes(
    env: Env, container_env: str, volume_type: str, volume_name: str | None
) -> KubernetesSettings:
    """JOB_NAMESPACE, NODE_SELECTOR, IMAGE_PULL_SECRETS, JOB_TTL_SECONDS, JOB_DEADLINE_SECONDS;
    read only when CONTAINER_ENV=kubernetes.

    Names are checked here against Kubernetes' own rules so a typo stops the service at start
    instead of failing every job with a 422 from the API server.
    """
    if container_env != "kubernetes":
        return KubernetesSettings()
    if volume_type != "kubernetes_pvc":
        raise SettingsError(
            "COMPUTE_VOLUME_TYPE", f"must be kubernetes_pvc for CONTAINER_ENV=kubernetes, got {volume_type!r}"
        )
    if not volume_name or not _DNS_SUBDOMAIN.fullmatch(volume_name):
        raise SettingsError("VOLUME_NAME", f"must name the storeBase PVC, got {volume_name!r}")
    namespace = env.str("JOB_NAMESPACE", "default")
    if not _DNS_LABEL.fullmatch(namespace):
        raise SettingsError("JOB_NAMESPACE", f"not a Kubernetes namespace name: {namespace!r}")
    ttl = env.int("JOB_TTL_SECONDS", 86400, 0)
    deadline = env.int("JOB_DEADLINE_SECONDS", 0, 0)
    service_host = env.str("KUBERNETES_SERVICE_HOST")
    return KubernetesSettings(
        namespace=namespace,
        node_selector=parse_node_selector(env.str("NODE_SELECTOR")),
        image_pull_secrets=parse_names(env.str("IMAGE_PULL_SECRETS"), "IMAGE_PULL_SECRETS"),
        ttl_seconds=ttl or None,
        deadline_seconds=deadline or None,
        in_cluster=service_host is not None,
        service_host=service_host,
        service_port=env.str("KUBERNETES_SERVICE_PORT"),
        kubeconfig=env.str("KUBECONFIG", os.path.expanduser("~/.kube/config")),
    )


def is_label_key(key: str) -> bool:
    """A Kubernetes label key: an optional DNS-subdomain prefix and a name of up to 63 characters."""
    prefix, _, name = key.rpartition("/")
    if prefix and not _DNS_SUBDOMAIN.fullmatch(prefix):
        return False
    return len(name) <= 63 and bool(_LABEL_VALUE.fullmatch(name)) and name != ""


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_VALUE.fullmatch(value))


def parse_node_selector(text: str | None) -> dict[str, str]:
    """NODE_SELECTOR: ``k=v,k2=v2`` (as pfcon 5.3 read it), each a valid Kubernetes label."""
    selector: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not is_label_key(key) or not is_label_value(value):
            raise SettingsError(
                "NODE_SELECTOR", f"expected comma-separated key=value node labels, got {item.strip()!r}"
            )
        selector[key] = value
    return selector


def parse_names(text: str | None, variable: str) -> tuple[str, ...]:
    """A comma-separated list of Kubernetes object names (IMAGE_PULL_SECRETS)."""
    names = tuple(name.strip() for name in (text or "").split(",") if name.strip())
    for name in names:
        if not _DNS_SUBDOMAIN.fullmatch(name):
            raise SettingsError(variable, f"not a Kubernetes object name: {name!r}")
    return names
