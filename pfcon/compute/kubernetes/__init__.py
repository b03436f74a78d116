"""Kubernetes: a pfcon job is a batch/v1 Job, built by :mod:`.job`, run by :mod:`.backend`.

Imports are absolute, so ``import kubernetes`` anywhere (here too) is the official client library.
"""

from __future__ import annotations

from pfcon.compute.base import ComputeBackend
from pfcon.compute.volumes import HostPaths
from pfcon.settings import Settings, SettingsError, is_label_key, is_label_value


def build(settings: Settings) -> tuple[ComputeBackend, HostPaths]:
    """Jobs mount storeBase as subPaths of the PVC VOLUME_NAME: a mount source is a path in it."""
    from pfcon.compute.kubernetes.backend import KubernetesBackend, client_configuration
    from pfcon.compute.kubernetes.job import JobTemplate

    for key, value in settings.job_labels.items():
        if not (is_label_key(key) and is_label_value(value)):
            raise SettingsError("JOB_LABELS", f"{key}={value} is not a valid Kubernetes label")
    k = settings.kubernetes
    template = JobTemplate(
        namespace=k.namespace,
        claim_name=settings.volume_name or "",
        node_selector=k.node_selector,
        image_pull_secrets=k.image_pull_secrets,
        ttl_seconds=k.ttl_seconds,
        deadline_seconds=k.deadline_seconds,
    )
    return KubernetesBackend(client_configuration(k), template), HostPaths("/")
