"""Where the engine finds storeBase: mount sources under a root the engine knows.

pfcon sees storeBase at STOREBASE_MOUNT; the engine needs the same folder by its own name,
which each family decides once at start-up from COMPUTE_VOLUME_TYPE: STOREBASE for ``host``,
the PVC for ``kubernetes_pvc``, a named volume's mountpoint for ``docker_local_volume``
(:mod:`pfcon.compute.dockerapi.volume`).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass


@dataclass(frozen=True)
class HostPaths:
    """Mount sources are absolute paths on the engine's host under ``root``."""

    root: str

    def source(self, storebase_relative: str) -> str:
        return posixpath.join(self.root, storebase_relative)
