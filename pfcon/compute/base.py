"""The compute backend interface: what every engine (Docker, Swarm, Kubernetes, ...) offers.

A backend receives a frozen :class:`JobSpec` — never Flask objects or raw form fields — and
raises only the domain errors of :mod:`pfcon.errors` (``JobNotFound``, ``JobExists``,
``InvalidJob``, ``BackendUnavailable``). Engine states map to :class:`JobStatus` through one
explicit table per backend; an unknown engine state maps to ``undefined``.
"""

from __future__ import annotations

import enum
import shlex
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from pfcon.errors import InvalidJob, JobNotFound


def utc_now() -> str:
    """RFC 3339 in UTC with a ``Z``, like the engines' own timestamps."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class JobStatus(enum.Enum):
    """The status strings as pfcon 6 spells them; the classic API answers ``notstarted``
    (pfcon 5.3's spelling, see :class:`pfcon.api.schemas.ClassicComputeSchema`)."""

    notStarted = "notStarted"
    started = "started"
    finishedSuccessfully = "finishedSuccessfully"
    finishedWithError = "finishedWithError"
    undefined = "undefined"

    @property
    def terminal(self) -> bool:
        """python-pfconclient stops polling on these three."""
        return self in (
            JobStatus.finishedSuccessfully,
            JobStatus.finishedWithError,
            JobStatus.undefined,
        )


@dataclass(frozen=True)
class Resources:
    """What the job asks for; ``None`` limits mean "do not limit" (IGNORE_LIMITS)."""

    number_of_workers: int = 1
    cpu_millicores: int | None = 1000
    memory_mib: int | None = 200
    gpus: int = 0
    #: the engine's IDs of the GPUs the admission queue gave the job; empty: the engine picks
    #: by count (and Docker then gives every job the first ``gpus`` of the host's GPUs)
    gpu_devices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Mount:
    """A storeBase-relative folder mounted into the job container."""

    source: str
    target: str
    read_only: bool


@dataclass(frozen=True)
class JobSpec:
    """Everything an engine needs to run one job."""

    jid: str
    image: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    mounts: tuple[Mount, ...] = ()
    user: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    shm_size_mib: int | None = None

    @property
    def cmd(self) -> str:
        return shlex.join(self.command)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe form, kept in the job record so a restarted service can start the job."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobSpec:
        return cls(
            jid=data["jid"],
            image=data["image"],
            command=tuple(data["command"]),
            env=dict(data["env"]),
            resources=_resources(data["resources"]),
            mounts=tuple(Mount(**mount) for mount in data["mounts"]),
            user=data["user"],
            labels=dict(data["labels"]),
            shm_size_mib=data["shm_size_mib"],
        )


def _resources(data: Mapping[str, Any]) -> Resources:
    """A job record's resources (records written before ``gpu_devices`` existed have none)."""
    return Resources(**{**data, "gpu_devices": tuple(data.get("gpu_devices") or ())})


@dataclass(frozen=True)
class JobInfo:
    """What the engine says about a job, in pfcon's vocabulary."""

    jid: str
    image: str
    cmd: str
    status: JobStatus
    message: str
    timestamp: str
    exit_code: int | None = None  # of a finished job, where the engine says it
    #: the engine's own name for the job (container or service id, batch job id, workflow id,
    #: Job uid), recorded in the store so an operator can find the job in the engine's tools
    engine_id: str | None = None
    #: a state on its way to another (Podman's exit before it is final): the answer for now,
    #: which the status feed does not vouch for (the next poll asks the engine again)
    passing: bool = False


@dataclass(frozen=True)
class EngineEvent:
    """One change the engine reported of a job, as its event stream said it: enough for the
    status feed to tell a start (which the event itself vouches for) from a change it must
    inspect."""

    jid: str
    action: str
    #: the container's id, so a start is matched to its run as an inspect's would be
    engine_id: str | None = None
    #: when the engine reported it (RFC 3339), the start time a start's event gives the job
    at: str = ""


@dataclass(frozen=True)
class EngineCapacity:
    """What a local engine's host has to give jobs (CPUs, memory, GPUs and their IDs)."""

    cpus: float
    memory_bytes: int
    gpus: int = 0
    #: the engine's IDs of those GPUs (as a job's device request names them), when it says
    gpu_devices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Capabilities:
    """What a backend supports; unsupported requests are refused, never silently ignored."""

    max_workers: int = 1
    gpus: bool = True
    shm_size: bool = True
    labels: bool = True
    user: bool = True  # can run the job as CONTAINER_USER


class ComputeBackend(ABC):
    """One container engine or scheduler."""

    name: str = "abstract"
    capabilities: Capabilities = Capabilities()
    #: the engine offers :meth:`events`; otherwise its state is polled with :meth:`poll_all`
    event_stream: bool = False

    def validate(self, spec: JobSpec) -> None:
        """Refuse, quickly and before any data is staged, a job this engine cannot run.

        The default checks the capability flags; engines add their own cheap checks (for
        example that the image is present), raising :class:`~pfcon.errors.InvalidJob`.
        """
        workers = spec.resources.number_of_workers
        if workers < 1 or workers > self.capabilities.max_workers:
            raise InvalidJob(
                f"number_of_workers: {self.name} supports 1 to {self.capabilities.max_workers} "
                f"workers, got {workers}"
            )
        if spec.resources.gpus and not self.capabilities.gpus:
            raise InvalidJob(f"gpu_limit: {self.name} cannot schedule GPUs")

    @abstractmethod
    def submit(self, spec: JobSpec) -> JobInfo:
        """Create and start the job."""

    @abstractmethod
    def info(self, jid: str) -> JobInfo:
        """Current state of the job; :class:`~pfcon.errors.JobNotFound` if the engine has none."""

    @abstractmethod
    def logs(self, jid: str, tail: int) -> str:
        """The last ``tail`` lines of the job's combined output."""

    def snapshot(self, jid: str, tail: int) -> tuple[JobInfo, str]:
        """State and log tail together; engines override it to save a round trip."""
        return self.info(jid), self.logs(jid, tail)

    def poll_all(self, jids: Iterable[str]) -> dict[str, JobInfo]:
        """The state of each of ``jids`` the engine knows (a missing jid it does not know).

        Backends that can ask for many jobs in one query override it; this default asks
        once per job.
        """
        found: dict[str, JobInfo] = {}
        for jid in jids:
            try:
                found[jid] = self.info(jid)
            except JobNotFound:
                continue
        return found

    def events(self, since: float, until: float) -> Iterator[EngineEvent]:
        """The changes of pfcon's jobs the engine reports between ``since`` and
        ``until`` (Unix times), as they happen; returns at ``until``. Only where
        :attr:`event_stream` is set; raises BackendUnavailable when the stream fails."""
        raise NotImplementedError(f"{self.name} has no event stream")

    @abstractmethod
    def remove(self, jid: str) -> None:
        """Stop and remove the job; :class:`~pfcon.errors.JobNotFound` if there is none."""

    @abstractmethod
    def stop(self, jid: str) -> None:
        """Stop the job if it runs, keeping what the engine knows of it (``REMOVE_JOBS=no``).

        DELETE calls it before the job's data goes, so a running job never writes into a
        folder being deleted; :class:`~pfcon.errors.JobNotFound` if there is no such job.
        """

    @abstractmethod
    def ping(self) -> str:
        """Raise :class:`~pfcon.errors.BackendUnavailable` unless the engine answers.

        Returns a short description of the engine (name and version) for the health check.
        """

    def capacity(self) -> EngineCapacity | None:
        """The host's resources, for engines that run jobs on this one host; None for schedulers
        (Swarm, Kubernetes, Slurm, Cromwell), which keep their own account."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engine connections."""

    # -- for pfcon's admission queue (engines that start every job at once: docker, podman) --
    def job_containers(self) -> dict[str, bool]:
        """Every pfcon job the engine holds, by jid: True while it holds resources."""
        raise NotImplementedError(f"{self.name} queues its jobs itself")
