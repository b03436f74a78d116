"""Which GPUs a job the queue starts gets. Pure.

The policy counts GPUs; the engine must also be told *which*. Asked for a count, Docker
gives every job the first ones of the host (``--gpus 1`` is always GPU 0: moby's
``countToDevices``), so two one-GPU jobs the queue let run side by side would share GPU 0
while GPU 1 idled. The queue therefore names each job's GPUs by the engine's IDs (an index
or a UUID), from those no job holding resources has, and the job's record keeps them: a
restarted service or another process knows which are taken.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

#: a job that holds resources or is about to start: (its id, how many GPUs, the IDs it has)
Holder = tuple[int, int, Sequence[str]]


def taken(inventory: Sequence[str], holders: Iterable[Holder]) -> set[str]:
    """The IDs the holders have. One that holds GPUs without IDs was started by count (the
    queue off, or before pfcon named devices), so the engine gave it the first ones: they
    are counted as the first of ``inventory``, which is exact when it lists indices."""
    used: set[str] = set()
    for _job, count, devices in holders:
        used.update(devices if devices else inventory[:count])
    return used


def free(inventory: Sequence[str], holders: Iterable[Holder]) -> list[str]:
    """The IDs no holder has, in ``inventory`` order."""
    used = taken(inventory, holders)
    return [device for device in inventory if device not in used]


def assign(
    inventory: Sequence[str], holders: Iterable[Holder], starting: Sequence[tuple[int, int]]
) -> dict[int, tuple[str, ...]]:
    """IDs for each of ``starting`` ((id, GPUs asked), in start order) that asks for GPUs:
    the first free ones in ``inventory`` order. One that cannot have all it asks is left
    out (it waits): the count said it fits, so only holders started by count, taken for
    the wrong GPUs, can cause that."""
    left = free(inventory, holders)
    given: dict[int, tuple[str, ...]] = {}
    for job_id, count in starting:
        if 0 < count <= len(left):
            given[job_id], left = tuple(left[:count]), left[count:]
    return given


def devices_of(spec: Mapping[str, object] | None) -> tuple[str, ...]:
    """The GPU IDs a job's recorded spec names (none for a spec from before they were named)."""
    resources = (spec or {}).get("resources")
    devices = resources.get("gpu_devices") if isinstance(resources, Mapping) else None
    return tuple(str(device) for device in devices) if isinstance(devices, list | tuple) else ()
