"""CONTAINER_ENV=cromwell: jobs as WDL 1.0 workflows on a Cromwell server.

``client`` speaks Cromwell's REST API, ``wdl`` writes the workflow, ``backend`` is the
:class:`~pfcon.compute.base.ComputeBackend`; :func:`build` wires them from the settings.
"""

from __future__ import annotations

from pfcon.compute.base import ComputeBackend
from pfcon.compute.volumes import HostPaths
from pfcon.settings import Settings, SettingsError


def build(settings: Settings) -> tuple[ComputeBackend, HostPaths]:
    """The backend and storeBase as Cromwell's nodes see it (STOREBASE); no network call."""
    from pfcon.compute.cromwell.backend import CromwellBackend
    from pfcon.compute.cromwell.client import CromwellClient
    from pfcon.compute.cromwell.wdl import RuntimeOptions
    from pfcon.storebase import StoreBase

    if settings.compute_volume_type != "host":
        raise SettingsError(
            "COMPUTE_VOLUME_TYPE",
            f"{settings.compute_volume_type!r} does not work with CONTAINER_ENV=cromwell; use host "
            "(STOREBASE: storeBase as Cromwell's compute nodes see it)",
        )
    if not settings.cromwell.url:
        raise SettingsError("CROMWELL_URL", "is required when CONTAINER_ENV=cromwell")
    volumes = HostPaths(settings.storebase or "")
    backend = CromwellBackend(
        CromwellClient(settings.cromwell.url),
        StoreBase(settings.storebase_mount),
        volumes,
        RuntimeOptions(timelimit_minutes=settings.cromwell.timelimit_minutes),
    )
    return backend, volumes
