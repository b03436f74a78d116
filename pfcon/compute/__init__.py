"""Compute backends, chosen once at start-up from CONTAINER_ENV through :data:`REGISTRY`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pfcon.compute.base import ComputeBackend
from pfcon.compute.volumes import HostPaths, docker_volume_root
from pfcon.settings import Settings, SettingsError, is_label_key, is_label_value

if TYPE_CHECKING:
    from pfcon.compute.dockerapi.docker import DockerApiBackend


def _docker(settings: Settings) -> tuple[ComputeBackend, HostPaths]:
    from pfcon.compute.dockerapi.docker import DockerBackend

    return _with_docker_volumes(DockerBackend(), settings)


def _podman(settings: Settings) -> tuple[ComputeBackend, HostPaths]:
    from pfcon.compute.dockerapi.podman import PodmanBackend

    return _with_docker_volumes(PodmanBackend(), settings)


def _swarm(settings: Settings) -> tuple[ComputeBackend, HostPaths]:
    from pfcon.compute.dockerapi.swarm import SwarmBackend

    return _with_docker_volumes(SwarmBackend(), settings)


def _with_docker_volumes(backend: DockerApiBackend, settings: Settings) -> tuple[ComputeBackend, HostPaths]:
    """Docker, Podman and Swarm find storeBase the same ways: a host path or a named volume."""
    if settings.compute_volume_type == "host":
        return backend, HostPaths(settings.storebase or "")
    if settings.compute_volume_type == "docker_local_volume":
        return backend, docker_volume_root(backend.client, settings)
    raise SettingsError(
        "COMPUTE_VOLUME_TYPE",
        f"{settings.compute_volume_type!r} does not work with CONTAINER_ENV={settings.container_env}",
    )


def _kubernetes(settings: Settings) -> tuple[ComputeBackend, HostPaths]:
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


def _cromwell(settings: Settings) -> tuple[ComputeBackend, HostPaths]:
    from pfcon.compute.cromwell import build

    return build(settings)


def _slurm(settings: Settings) -> tuple[ComputeBackend, HostPaths]:
    from pfcon.compute.batch.slurm import build_slurm_backend

    return build_slurm_backend(settings)


#: CONTAINER_ENV -> factory returning the backend and where it finds storeBase.
REGISTRY: dict[str, Callable[[Settings], tuple[ComputeBackend, HostPaths]]] = {
    "docker": _docker,
    "podman": _podman,
    "swarm": _swarm,
    "kubernetes": _kubernetes,
    "cromwell": _cromwell,
    "slurm": _slurm,
}


def build_backend(settings: Settings) -> tuple[ComputeBackend, HostPaths]:
    factory = REGISTRY.get(settings.container_env)
    if factory is None:
        raise SettingsError(
            "CONTAINER_ENV",
            f"{settings.container_env!r} is not available in this version; available: {', '.join(REGISTRY)}",
        )
    backend, volumes = factory(settings)
    check_capabilities(settings, backend)
    return backend, volumes


def check_capabilities(settings: Settings, backend: ComputeBackend) -> None:
    """Settings the chosen engine cannot honour stop the service instead of being ignored."""
    capabilities = backend.capabilities
    if settings.shm_size_mib and not capabilities.shm_size:
        raise SettingsError("SHM_SIZE", f"{backend.name} cannot set the size of /dev/shm")
    if settings.job_labels and not capabilities.labels:
        raise SettingsError("JOB_LABELS", f"{backend.name} cannot label jobs")
    if settings.container_user and not capabilities.user:
        raise SettingsError("CONTAINER_USER", f"{backend.name} cannot run jobs as a given user")
