"""The resource-aware queue: the policy wired to the job store and the engine's capacity.

The scheduler thread (:mod:`pfcon.starter`) calls :meth:`AdmissionQueue.pick` instead of
claiming the oldest queued jobs: the policy decides from the store's view of who holds what,
the waiting jobs get a message saying why they wait, and the chosen jobs are claimed under
the store's admission lock, so processes and replicas never hand out one free share twice.
The queue lives in the store: a restarted service finds every queued job in its place.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pfcon.admission.policy import AdmissionPolicy, Amount, Decision, Job, total
from pfcon.compute.base import EngineCapacity, Resources
from pfcon.errors import InvalidJob
from pfcon.settings import AdmissionSettings
from pfcon.store import JobRow, JobStore

#: the engine host's size (ComputeBackend.capacity of docker and podman)
HostResources = Callable[[], EngineCapacity | None]
MiB = 1024 * 1024


@dataclass(frozen=True)
class QueueStats:
    """What server info and metrics report: the capacity, its use and the queue's length."""

    capacity: Amount
    used: Amount
    running: int
    queued: int
    fair_share: bool

    @property
    def free(self) -> Amount:
        return self.capacity - self.used

    def free_share(self) -> dict[str, float]:
        """Free part of each resource, 0 to 1 (1 where the capacity is zero)."""
        return {
            name: (max(0, room - used) / room if room > 0 else 1.0)
            for name, room, used in zip(
                ("cpu", "memory", "gpu"), self.capacity.values(), self.used.values(), strict=True
            )
        }


def amount_of(row: JobRow) -> Amount:
    """What a job holds or asks for; a job recorded without limits holds none."""
    return Amount(row.cpu_millicores or 0, row.memory_mib or 0, row.gpus or 0)


def as_jobs(rows: Sequence[JobRow]) -> list[Job]:
    return [Job(row.id, row.auid, amount_of(row)) for row in rows]


class Capacity:
    """The capacity to hand out: the settings' values, the engine's for the rest (read once)."""

    def __init__(self, settings: AdmissionSettings, host: HostResources) -> None:
        self.settings = settings
        self.host = host
        self._lock = threading.Lock()
        self._amount: Amount | None = None

    def get(self) -> Amount:
        """Read from the engine on first use (BackendUnavailable if it does not answer)."""
        with self._lock:
            if self._amount is None:
                self._amount = self._read()
            return self._amount

    def _read(self) -> Amount:
        s = self.settings
        if s.cpus is not None and s.memory_mib is not None and s.gpus is not None:
            cpus, memory_mib, gpus = s.cpus, s.memory_mib, s.gpus
        else:
            host = self.host() or EngineCapacity(0, 0)
            cpus = s.cpus if s.cpus is not None else host.cpus
            memory_mib = s.memory_mib if s.memory_mib is not None else host.memory_bytes // MiB
            gpus = s.gpus if s.gpus is not None else host.gpus
        return Amount(round(cpus * 1000 * s.cpu_overcommit), memory_mib, gpus)


class AdmissionQueue:
    """Decides which queued jobs start; answers what is free and how long the queue is."""

    def __init__(self, settings: AdmissionSettings, store: JobStore, host: HostResources) -> None:
        self.settings = settings
        self.store = store
        self.capacity = Capacity(settings, host)

    def policy(self) -> AdmissionPolicy:
        return AdmissionPolicy(self.capacity.get(), self.settings.fair_share)

    def check(self, resources: Resources) -> None:
        """Refuse at submit a job bigger than the whole capacity (400 naming the resource)."""
        amount = Amount(resources.cpu_millicores or 0, resources.memory_mib or 0, resources.gpus)
        reason = self.policy().too_big(amount)
        if reason:
            raise InvalidJob(reason)

    def pick(self, owner: str) -> tuple[list[JobRow], dict[int, str]]:
        """Claim the jobs to start now; also the claimed jobs that can never fit, with why.

        A first, lock-free look decides whether anything can start and tells the waiting
        jobs why they wait; only then is the decision taken again under the admission lock.
        """
        policy = self.policy()
        holding, waiting = self.store.admission_view()
        served = self._served(waiting)
        first = policy.decide(as_jobs(holding), as_jobs(waiting), served)
        self.store.note_many(
            {
                row.id: first.reasons[row.id]
                for row in waiting
                if first.reasons.get(row.id, row.message) != row.message
            }
        )
        if not first.start and not first.never:
            return [], {}
        taken: list[Decision] = []

        def choose(holding: list[JobRow], waiting: list[JobRow]) -> list[int]:
            decision = policy.decide(as_jobs(holding), as_jobs(waiting), served)
            taken.append(decision)
            return [*decision.start, *decision.never]

        claimed = self.store.admit(owner, choose)
        return claimed, taken[-1].never if taken else {}

    def _served(self, waiting: Sequence[JobRow]) -> dict[str, float]:
        if not self.settings.fair_share or not waiting:
            return {}
        last = self.store.last_admitted(row.auid for row in waiting)
        return {auid: when.timestamp() for auid, when in last.items()}

    def stats(self) -> QueueStats:
        """From the store only (never the engine once the capacity is known): cheap for metrics."""
        capacity = self.capacity.get()
        holding, waiting = self.store.admission_view()
        used = total(amount_of(row) for row in holding)
        return QueueStats(capacity, used, len(holding), len(waiting), self.settings.fair_share)
