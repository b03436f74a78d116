"""Compute backends, chosen once at start-up from CONTAINER_ENV through :data:`REGISTRY`."""

from __future__ import annotations

from collections.abc import Callable

from pfcon.compute.base import ComputeBackend
from pfcon.compute.volumes import HostPaths, docker_volume_root
from pfcon.settings import Settings, SettingsError


def _docker(settings: Settings) -> tuple[ComputeBackend, HostPaths]:
    from pfcon.compute.docker import DockerBackend

    backend = DockerBackend()
    if settings.compute_volume_type == "host":
        return backend, HostPaths(settings.storebase or "")
    if settings.compute_volume_type == "docker_local_volume":
        return backend, docker_volume_root(backend.client, settings)
    raise SettingsError(
        "COMPUTE_VOLUME_TYPE",
        f"{settings.compute_volume_type!r} does not work with CONTAINER_ENV=docker",
    )


def _slurm(settings: Settings) -> tuple[ComputeBackend, HostPaths]:
    from pfcon.compute.slurm import build_slurm_backend

    return build_slurm_backend(settings)


#: CONTAINER_ENV -> factory returning the backend and where it finds storeBase.
REGISTRY: dict[str, Callable[[Settings], tuple[ComputeBackend, HostPaths]]] = {
    "docker": _docker,
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
