"""Engines that speak the Docker API: Docker itself, Podman's compatibility API and Swarm.

The builders import their engine's module only when chosen, as the registry in
:mod:`pfcon.compute` expects of every family.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfcon.compute.base import ComputeBackend
from pfcon.compute.volumes import HostPaths
from pfcon.settings import Settings, SettingsError

if TYPE_CHECKING:
    from pfcon.compute.dockerapi.docker import DockerApiBackend


def build_docker(settings: Settings) -> tuple[ComputeBackend, HostPaths]:
    from pfcon.compute.dockerapi.docker import DockerBackend

    return _with_docker_volumes(DockerBackend(), settings)


def build_podman(settings: Settings) -> tuple[ComputeBackend, HostPaths]:
    from pfcon.compute.dockerapi.podman import PodmanBackend

    return _with_docker_volumes(PodmanBackend(), settings)


def build_swarm(settings: Settings) -> tuple[ComputeBackend, HostPaths]:
    from pfcon.compute.dockerapi.swarm import SwarmBackend

    return _with_docker_volumes(SwarmBackend(), settings)


def _with_docker_volumes(backend: DockerApiBackend, settings: Settings) -> tuple[ComputeBackend, HostPaths]:
    """Docker, Podman and Swarm find storeBase the same ways: a host path or a named volume."""
    if settings.compute_volume_type == "host":
        return backend, HostPaths(settings.storebase or "")
    if settings.compute_volume_type == "docker_local_volume":
        from pfcon.compute.dockerapi.volume import docker_volume_root

        return backend, docker_volume_root(backend.client, settings)
    raise SettingsError(
        "COMPUTE_VOLUME_TYPE",
        f"{settings.compute_volume_type!r} does not work with CONTAINER_ENV={settings.container_env}",
    )
