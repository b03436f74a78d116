"""PFCON_QUEUE: pfcon's own queue for the engines that start every job at once (docker, podman).

With the capacity it hands out and how it is shared (docs/admission.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from pfcon.settings.env import Env, SettingsError

#: the engines that start every job at once, so pfcon queues for them (the others queue themselves)
QUEUEING_ENGINES = ("docker", "podman")


@dataclass(frozen=True)
class AdmissionSettings:
    """PFCON_QUEUE and the capacity it hands out (docker and podman only).

    ``None`` capacities are read from the engine when first needed (reading settings never
    talks to it); memory and GPUs are never overcommitted, CPUs by ``cpu_overcommit``.
    """

    queue: bool = False
    cpus: float | None = None
    memory_mib: int | None = None
    gpus: int | None = None
    cpu_overcommit: float = 1.0
    fair_share: bool = False
    #: backfill by run-time estimates from the history (docs/admission.md, rule 4)
    estimates: bool = False
    #: the engine's IDs of the GPUs to hand out (PFCON_GPU_DEVICES); None: see Capacity
    gpu_devices: tuple[str, ...] | None = None


def read_admission(env: Env, container_env: str, ignore_limits: bool) -> AdmissionSettings:
    """PFCON_QUEUE (default on for docker and podman), the capacity and its sharing.

    The queue admits jobs by their limits, so with IGNORE_LIMITS it is off by default and
    cannot be turned on; engines that queue themselves refuse PFCON_QUEUE=on.
    """
    queueing = container_env in QUEUEING_ENGINES
    queue = env.bool("PFCON_QUEUE", queueing and not ignore_limits)
    if queue and not queueing:
        raise SettingsError(
            "PFCON_QUEUE", f"{container_env} queues jobs itself; pfcon queues for docker and podman"
        )
    if queue and ignore_limits:
        raise SettingsError(
            "PFCON_QUEUE", "needs the jobs' limits to admit them by; IGNORE_LIMITS=true drops them"
        )
    if not queue:
        return AdmissionSettings()
    gpus, gpu_devices = _gpus(env)
    return AdmissionSettings(
        queue=True,
        cpus=env.float("PFCON_CAPACITY_CPUS", None, 0.001),
        memory_mib=env.int("PFCON_CAPACITY_MEMORY_MIB", None, 1),
        gpus=gpus,
        gpu_devices=gpu_devices,
        cpu_overcommit=env.float("PFCON_CPU_OVERCOMMIT", 1.0, 1.0) or 1.0,
        fair_share=env.bool("PFCON_FAIR_SHARE", False),
        estimates=env.bool("PFCON_RUNTIME_ESTIMATES", False),
    )


def _gpus(env: Env) -> tuple[int | None, tuple[str, ...] | None]:
    """PFCON_CAPACITY_GPUS and PFCON_GPU_DEVICES (comma-separated IDs, e.g. ``0,2`` or GPU
    UUIDs): the list, when given, is the capacity, and a count beside it must agree."""
    gpus = env.int("PFCON_CAPACITY_GPUS", None, 0)
    listed = env.str("PFCON_GPU_DEVICES")
    if listed is None:
        return gpus, None
    devices = tuple(part.strip() for part in listed.split(",") if part.strip())
    if len(set(devices)) != len(devices):
        raise SettingsError("PFCON_GPU_DEVICES", f"names a GPU twice: {listed!r}")
    if gpus is not None and gpus != len(devices):
        raise SettingsError(
            "PFCON_GPU_DEVICES",
            f"lists {len(devices)} GPU(s) but PFCON_CAPACITY_GPUS says {gpus}; set one of the two",
        )
    return len(devices), devices
