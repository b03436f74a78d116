"""The resource-aware queue: the policy wired to the job store and the engine's capacity.

The scheduler thread (:mod:`pfcon.starter`) calls :meth:`AdmissionQueue.pick` instead of
claiming the oldest queued jobs: the policy decides from the store's view of who holds what,
the waiting jobs get a message saying why they wait, and the chosen jobs are claimed under
the store's admission lock, so processes and replicas never hand out one free share twice.
The queue lives in the store: a restarted service finds every queued job in its place.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pfcon.admission import devices
from pfcon.admission.policy import AdmissionPolicy, Amount, Decision, Job, total
from pfcon.compute.base import EngineCapacity, Resources
from pfcon.errors import InvalidJob
from pfcon.settings import AdmissionSettings
from pfcon.store import JobRow, JobStore

#: the engine host's size (ComputeBackend.capacity of docker and podman)
HostResources = Callable[[], EngineCapacity | None]
MiB = 1024 * 1024
#: a job's run-time estimate: the longest of its image and command's last runs, plus this part
ESTIMATE_MARGIN = 0.1
#: how many of those last runs
ESTIMATE_RUNS = 5
#: how long an estimate is reused before the history is read again; "no earlier run" is
#: asked again sooner, so a command's first run counts soon after it ended
ESTIMATE_TTL = 30.0
UNKNOWN_TTL = 5.0
#: jobs at the front of the queue whose estimates are looked up (the rest count as unknown)
ESTIMATED_WAITING = 32
#: beyond this many commands read, every estimate is read again (bounded memory)
MAX_ESTIMATES = 10_000


@dataclass(frozen=True)
class QueueStats:
    """What server info and metrics report: the capacity, its use and the queue's length."""

    capacity: Amount
    used: Amount
    running: int
    queued: int
    fair_share: bool
    #: the IDs of the GPUs the queue hands out, and those no job holds
    gpu_devices: tuple[str, ...] = ()
    free_gpu_devices: tuple[str, ...] = ()

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


def _holders(rows: Sequence[JobRow]) -> list[devices.Holder]:
    return [(row.id, row.gpus or 0, devices.devices_of(row.spec)) for row in rows]


def as_jobs(rows: Sequence[JobRow]) -> list[Job]:
    return [Job(row.id, row.auid, amount_of(row)) for row in rows]


Known = dict[tuple[str, str], float | None]


class Estimates:
    """Run-time estimates from the store's history, by image and command (rule 4); used by
    the one scheduler thread of a process.

    A job's estimate is the longest of the last :data:`ESTIMATE_RUNS` successful runs of the
    same image and command, plus :data:`ESTIMATE_MARGIN`; none without such a run. Looked up
    only for the jobs holding resources and the first :data:`ESTIMATED_WAITING` in the
    queue, and before the admission lock is taken (the decision under it reads nothing more
    than the store's rows). An estimate is reused for :data:`ESTIMATE_TTL`; "no run yet" until
    a job that held resources is seen gone (its run may be the first) or :data:`UNKNOWN_TTL`.
    """

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._read: dict[tuple[str, str], tuple[float | None, float]] = {}
        self._holders: set[int] = set()

    def lookup(self, holding: Sequence[JobRow], waiting: Sequence[JobRow]) -> Known:
        holders = {row.id for row in holding}
        ended = bool(self._holders - holders)
        self._holders = holders
        now = time.monotonic()
        if len(self._read) > MAX_ESTIMATES:
            self._read = {}
        elif ended:
            self._read = {key: read for key, read in self._read.items() if read[0] is not None}
        known: Known = {}
        for row in [*holding, *waiting[:ESTIMATED_WAITING]]:
            key = (row.image, row.cmd)
            if key not in known:
                known[key] = self._estimate(key, now)
        return known

    def _estimate(self, key: tuple[str, str], now: float) -> float | None:
        read = self._read.get(key)
        if read is None or now - read[1] > (ESTIMATE_TTL if read[0] is not None else UNKNOWN_TTL):
            runs = self.store.run_times(*key, ESTIMATE_RUNS)
            read = self._read[key] = (max(runs) * (1 + ESTIMATE_MARGIN) if runs else None, now)
        return read[0]


def with_ends(rows: Sequence[JobRow], known: Known, now: float) -> list[Job]:
    """Jobs holding resources, each with its estimated end (started + estimate) if known."""
    jobs = []
    for row in rows:
        took = known.get((row.image, row.cmd))
        began = row.started_at.timestamp() if row.started_at else now
        jobs.append(Job(row.id, row.auid, amount_of(row), ends_at=None if took is None else began + took))
    return jobs


def with_run_times(rows: Sequence[JobRow], known: Known) -> list[Job]:
    """Queued jobs, each with its estimated run time if known."""
    return [Job(row.id, row.auid, amount_of(row), runs_for=known.get((row.image, row.cmd))) for row in rows]


class Capacity:
    """The capacity to hand out: the settings' values, the engine's for the rest (read once);
    and the IDs of its GPUs (PFCON_GPU_DEVICES, else the engine's when it names as many,
    else indices from 0)."""

    def __init__(self, settings: AdmissionSettings, host: HostResources) -> None:
        self.settings = settings
        self.host = host
        self._lock = threading.Lock()
        self._read_once: tuple[Amount, tuple[str, ...]] | None = None

    def get(self) -> Amount:
        """Read from the engine on first use (BackendUnavailable if it does not answer)."""
        return self._known()[0]

    def gpu_devices(self) -> tuple[str, ...]:
        return self._known()[1]

    def _known(self) -> tuple[Amount, tuple[str, ...]]:
        with self._lock:
            if self._read_once is None:
                self._read_once = self._read()
            return self._read_once

    def _read(self) -> tuple[Amount, tuple[str, ...]]:
        s = self.settings
        all_set = s.cpus is not None and s.memory_mib is not None and s.gpus is not None
        host = (None if all_set else self.host()) or EngineCapacity(0, 0)
        cpus = s.cpus if s.cpus is not None else host.cpus
        memory_mib = s.memory_mib if s.memory_mib is not None else host.memory_bytes // MiB
        gpus = s.gpus if s.gpus is not None else host.gpus
        if s.gpu_devices is not None:
            ids = s.gpu_devices
        elif len(host.gpu_devices) == gpus:
            ids = host.gpu_devices
        else:
            ids = tuple(str(index) for index in range(gpus))
        return Amount(round(cpus * 1000 * s.cpu_overcommit), memory_mib, gpus), ids


class AdmissionQueue:
    """Decides which queued jobs start; answers what is free and how long the queue is."""

    def __init__(self, settings: AdmissionSettings, store: JobStore, host: HostResources) -> None:
        self.settings = settings
        self.store = store
        self.capacity = Capacity(settings, host)
        self.estimates = Estimates(store) if settings.estimates else None

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
        known = self.estimates.lookup(holding, waiting) if self.estimates is not None else None
        first = self._decide(policy, holding, waiting, served, known)
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

        def choose(holding: list[JobRow], waiting: list[JobRow]) -> dict[int, tuple[str, ...]]:
            decision = self._decide(policy, holding, waiting, served, known)
            taken.append(decision)
            by_id = {row.id: row for row in waiting}
            starting = [by_id[job_id] for job_id in decision.start]
            given = self._gpus_for(holding, starting)
            # a job that asks for GPUs and finds none free waits (see devices.assign)
            chosen = {row.id: given.get(row.id, ()) for row in starting if not row.gpus or row.id in given}
            return {**chosen, **dict.fromkeys(decision.never, ())}

        claimed = self.store.admit(owner, choose)
        return claimed, taken[-1].never if taken else {}

    def _gpus_for(self, holding: Sequence[JobRow], starting: Sequence[JobRow]) -> dict[int, tuple[str, ...]]:
        """Which GPUs each starting job that asks for some gets (:mod:`pfcon.admission.devices`)."""
        if not any(row.gpus for row in starting):
            return {}
        asking = [(row.id, row.gpus or 0) for row in starting]
        return devices.assign(self.capacity.gpu_devices(), _holders(holding), asking)

    def _decide(
        self,
        policy: AdmissionPolicy,
        holding: Sequence[JobRow],
        waiting: Sequence[JobRow],
        served: dict[str, float],
        known: Known | None,
    ) -> Decision:
        """The policy's decision; with estimates (``known``, by image and command) rule 4's."""
        if known is None:
            return policy.decide(as_jobs(holding), as_jobs(waiting), served)
        now = time.time()
        return policy.decide(with_ends(holding, known, now), with_run_times(waiting, known), served, now=now)

    def _served(self, waiting: Sequence[JobRow]) -> dict[str, float]:
        if not self.settings.fair_share or not waiting:
            return {}
        last = self.store.last_admitted(row.auid for row in waiting)
        return {auid: when.timestamp() for auid, when in last.items()}

    def stats(self) -> QueueStats:
        """From the store only (never the engine once the capacity is known): cheap for metrics."""
        capacity, inventory = self.capacity.get(), self.capacity.gpu_devices()
        holding, waiting = self.store.admission_view()
        used = total(amount_of(row) for row in holding)
        free = tuple(devices.free(inventory, _holders(holding)))
        fair_share = self.settings.fair_share
        return QueueStats(capacity, used, len(holding), len(waiting), fair_share, inventory, free)
