"""Compute backends, chosen once at start-up from CONTAINER_ENV through :data:`REGISTRY`.

One subpackage per engine family (``dockerapi``, ``kubernetes``, ``batch``, ``cromwell``) under
what they share here: the interface (``base``), where storeBase is (``volumes``), log tails.
"""

from __future__ import annotations

from collections.abc import Callable

from pfcon.compute import batch, cromwell, dockerapi, kubernetes
from pfcon.compute.base import ComputeBackend
from pfcon.compute.volumes import HostPaths
from pfcon.settings import Settings, SettingsError

#: CONTAINER_ENV -> its family's factory, returning the backend and where it finds storeBase.
#: A family's package imports its engine's modules (and client library) only when chosen.
REGISTRY: dict[str, Callable[[Settings], tuple[ComputeBackend, HostPaths]]] = {
    "docker": dockerapi.build_docker,
    "podman": dockerapi.build_podman,
    "swarm": dockerapi.build_swarm,
    "kubernetes": kubernetes.build,
    "cromwell": cromwell.build,
    "slurm": batch.build_slurm,
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
