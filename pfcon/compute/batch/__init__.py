"""Batch schedulers (Slurm): a scheduler is data over one shared backend that writes job scripts."""

from __future__ import annotations

from pfcon.compute.base import ComputeBackend
from pfcon.compute.volumes import HostPaths
from pfcon.settings import Settings


def build_slurm(settings: Settings) -> tuple[ComputeBackend, HostPaths]:
    from pfcon.compute.batch.slurm import build_slurm_backend

    return build_slurm_backend(settings)
