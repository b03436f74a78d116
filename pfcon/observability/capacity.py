"""The capacity gauge of local engines: the host's size, less what running jobs asked for.

The host's size is read from the engine once per process, in the background (retried while
the engine does not answer), never on a request path; what jobs hold and how many wait comes
from the job store. Admission control (issue 17) can hand its own reader instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from pfcon.admission.queue import QueueStats
from pfcon.background import join
from pfcon.compute.base import ComputeBackend, EngineCapacity
from pfcon.errors import PfconError
from pfcon.observability.metrics import Capacity, StoreState
from pfcon.store import JobStore

log = logging.getLogger(__name__)
MiB = 1024 * 1024
RETRY_SECONDS = 30.0
NOT_STARTED = "notStarted"


class HostCapacity:
    """The engine's host size, fetched by a daemon thread; ``None`` until known or if not local."""

    def __init__(self, backend: ComputeBackend) -> None:
        self.host: EngineCapacity | None = None
        self._backend = backend
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fetch, name="pfcon-capacity", daemon=True)
        self._thread.start()

    def _fetch(self) -> None:
        while not self._stop.is_set():
            try:
                self.host = self._backend.capacity()
                return
            except PfconError as error:
                log.info("engine capacity not known yet: %s", error.message)
            self._stop.wait(RETRY_SECONDS)

    def close(self) -> None:
        self._stop.set()
        join(self._thread)


def free_capacity(host: EngineCapacity, store: JobStore) -> Capacity:
    running = store.running()
    return Capacity(
        total_cpus=host.cpus,
        free_cpus=host.cpus - sum(job.cpu_millicores or 0 for job in running) / 1000,
        total_memory_bytes=host.memory_bytes,
        free_memory_bytes=host.memory_bytes - sum(job.memory_mib or 0 for job in running) * MiB,
        total_gpus=host.gpus,
        free_gpus=host.gpus - sum(job.gpus for job in running),
        queue_length=store.counts().get(NOT_STARTED, 0),
    )


def queue_capacity(stats: QueueStats) -> Capacity:
    """The admission queue's own account: its capacity (settings, overcommit) and its queue."""
    free = stats.free
    return Capacity(
        total_cpus=stats.capacity.cpu_millicores / 1000,
        free_cpus=free.cpu_millicores / 1000,
        total_memory_bytes=stats.capacity.memory_mib * MiB,
        free_memory_bytes=free.memory_mib * MiB,
        total_gpus=stats.capacity.gpus,
        free_gpus=free.gpus,
        queue_length=stats.queued,
    )


def state_reader(
    store: JobStore, host: HostCapacity | None, queue: Callable[[], QueueStats | None] | None = None
) -> Callable[[], StoreState]:
    """What the state gauges read at each scrape (the admission queue's figures when it is on)."""

    def read() -> StoreState:
        try:
            stats = queue() if queue is not None else None
        except PfconError:  # its capacity not read yet and the engine silent: the host's view
            stats = None
        if stats is not None:
            return StoreState(store.counts_by_api(), queue_capacity(stats))
        known = host.host if host is not None else None
        return StoreState(store.counts_by_api(), free_capacity(known, store) if known else None)

    return read
