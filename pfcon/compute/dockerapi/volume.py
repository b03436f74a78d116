"""COMPUTE_VOLUME_TYPE=docker_local_volume: storeBase is a named volume of the Docker-API engine.

Its host mountpoint is the root of every mount source: the volume VOLUME_NAME, or else the
volume mounted at STOREBASE_MOUNT in the container labelled PFCON_SELECTOR (pfcon's own).
"""

from __future__ import annotations

import docker
import docker.errors

from pfcon.compute.volumes import HostPaths
from pfcon.settings import Settings, SettingsError


def docker_volume_root(client: docker.DockerClient, settings: Settings) -> HostPaths:
    """Resolve the host folder of the storeBase volume (a start-up call to the engine)."""
    name = settings.volume_name or _discover_volume(client, settings)
    try:
        volume = client.volumes.get(name)
    except docker.errors.NotFound:
        raise SettingsError("VOLUME_NAME", f"docker volume {name!r} does not exist") from None
    except docker.errors.DockerException as exc:
        raise SettingsError("VOLUME_NAME", f"cannot inspect docker volume {name!r}: {exc}") from None
    return HostPaths(volume.attrs["Mountpoint"])


def _discover_volume(client: docker.DockerClient, settings: Settings) -> str:
    """Find the volume mounted at STOREBASE_MOUNT in the container labelled PFCON_SELECTOR."""
    try:
        containers = client.containers.list(filters={"label": settings.pfcon_selector})
    except docker.errors.DockerException as exc:
        raise SettingsError("PFCON_SELECTOR", f"cannot list containers to find the volume: {exc}") from None
    target = str(settings.storebase_mount)
    for container in containers:
        for mount in container.attrs.get("Mounts", []):
            if mount.get("Destination") == target and mount.get("Type") == "volume":
                return mount["Name"]
    raise SettingsError(
        "VOLUME_NAME",
        f"not set, and no running container labelled {settings.pfcon_selector!r} "
        f"has a volume mounted at {target}",
    )
