"""What a Docker-API container's ``State`` means for a pfcon job.

One explicit table per engine maps the engine's state names to our statuses; a container
that has ended is then judged by what ended it, in this order: the kernel's OOM killer, the
engine shutting down under it, its exit code. Shared by the Docker and Podman backends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pfcon.compute.base import JobStatus

#: Docker's ``State.Status`` values -> our status. ``finishedSuccessfully`` means "ended":
#: the exit is judged by :func:`container_status`.
DOCKER_STATES: Mapping[str, JobStatus] = {
    "created": JobStatus.notStarted,
    "running": JobStatus.started,
    "paused": JobStatus.started,
    "restarting": JobStatus.started,
    "removing": JobStatus.undefined,
    "exited": JobStatus.finishedSuccessfully,
    "dead": JobStatus.finishedWithError,
}

#: Podman's compatibility API also passes libpod's own state names through. ``stopped`` is
#: libpod's state between a container's exit and its cleanup (then ``exited``); see
#: :attr:`Judgement.uncleaned`.
PODMAN_STATES: Mapping[str, JobStatus] = {
    **DOCKER_STATES,
    "configured": JobStatus.notStarted,
    "initialized": JobStatus.notStarted,
    "stopping": JobStatus.started,
    "stopped": JobStatus.finishedSuccessfully,
}

#: How long before an engine's start a job may have been stopped by its shutdown: Docker
#: stops every container within its stop timeout (10 s) and exits within its shutdown
#: timeout (15 s); the rest is a margin for a restart that takes a moment.
SHUTDOWN_WINDOW = timedelta(seconds=30)
#: how long an ended container may wait for its engine's cleanup before it is judged anyway
CLEANUP_GRACE = timedelta(seconds=10)
#: how long a SIGKILLed container is given to disappear before its kill is judged: Podman's
#: forced removal (kill, then remove) takes well under a second here
REMOVAL_GRACE = timedelta(seconds=2)
#: the message of an exit not judged yet (see :attr:`Judgement.uncleaned`)
ENDING = "ending: the engine is still recording how the job ended"
SIGNALS = {129: "SIGHUP", 130: "SIGINT", 134: "SIGABRT", 137: "SIGKILL", 139: "SIGSEGV", 143: "SIGTERM"}


@dataclass(frozen=True)
class Judgement:
    """How an engine reports the end of its containers."""

    table: Mapping[str, JobStatus] = field(default_factory=lambda: DOCKER_STATES)
    #: the engine does not flag OOM kills, so a SIGKILL under a memory limit is taken as one
    sigkill_means_oom: bool = False
    #: the state of a container that exited and is not cleaned up yet. Podman marks no removal
    #: in progress (Docker says ``removing``): a job removed behind pfcon's back is killed,
    #: then shows ``stopped`` or even ``exited`` with 137 for a moment before it is gone, and
    #: would be judged by the SIGKILL of its removal ("out of memory"). So such an engine's
    #: container in this state (up to :data:`CLEANUP_GRACE`), or killed by SIGKILL (up to
    #: :data:`REMOVAL_GRACE`), is still running, with the message :data:`ENDING`.
    uncleaned: str | None = None


def container_status(
    state: Mapping[str, Any],
    memory_limit: int | None = None,
    engine_started_at: datetime | None = None,
    judgement: Judgement = Judgement(),
    engine_name: str = "docker",
) -> tuple[JobStatus, str]:
    """Map a container's ``State`` to (status, message)."""
    engine_state = str(state.get("Status", ""))
    status = judgement.table.get(engine_state, JobStatus.undefined)
    if status is JobStatus.undefined:
        return status, f"unexpected engine state {engine_state!r}"
    if judgement.uncleaned and _ending(state, engine_state == judgement.uncleaned):
        return JobStatus.started, ENDING
    if status is not JobStatus.finishedSuccessfully:
        return status, engine_state
    code = state.get("ExitCode", -1)
    oom = _out_of_memory(state, code, memory_limit, judgement)
    if oom:
        return JobStatus.finishedWithError, oom
    if code == 0:
        return JobStatus.finishedSuccessfully, "exited"
    if _stopped_by_engine_shutdown(state, engine_started_at):
        return JobStatus.finishedWithError, (
            f"stopped by the {engine_name} engine: the job was still running when the engine shut "
            f"down (it started again at {engine_started_at:%Y-%m-%dT%H:%M:%SZ}); exit code {code}"
        )
    return JobStatus.finishedWithError, _exit_message(state, code)


def _ending(state: Mapping[str, Any], uncleaned: bool) -> bool:
    """The container ended so recently that its end may not be final (see ``uncleaned``)."""
    finished = parse_time(state.get("FinishedAt"))
    if finished is None:
        return False
    age = datetime.now(finished.tzinfo) - finished
    return age < CLEANUP_GRACE if uncleaned else state.get("ExitCode") == 137 and age < REMOVAL_GRACE


def _out_of_memory(state: Mapping[str, Any], code: int, limit: int | None, judgement: Judgement) -> str:
    limit_text = f" of {limit // (1024 * 1024)} MiB" if limit else ""
    if state.get("OOMKilled"):
        return f"out of memory: the job was killed for exceeding its memory limit{limit_text}"
    if judgement.sigkill_means_oom and code == 137 and limit:
        return (
            f"out of memory (most likely): the job was killed with SIGKILL under its memory "
            f"limit{limit_text}; this engine does not report out-of-memory kills directly"
        )
    return ""


def _stopped_by_engine_shutdown(state: Mapping[str, Any], engine_started_at: datetime | None) -> bool:
    """The job started before the engine's current start and failed as that engine went down.

    Only failures are judged so: an engine stops a job with SIGTERM then SIGKILL (exit code
    143 or 137) or, after a crash, marks it 255 when it starts again; a job that exited 0 had
    finished its work, even moments before a restart.
    """
    if engine_started_at is None:
        return False
    started, finished = parse_time(state.get("StartedAt")), parse_time(state.get("FinishedAt"))
    if started is None or finished is None:
        return False
    return started < engine_started_at and finished >= engine_started_at - SHUTDOWN_WINDOW


def _exit_message(state: Mapping[str, Any], code: int) -> str:
    signal = SIGNALS.get(code)
    cause = f" (killed by {signal}, sent from outside the job)" if signal in {"SIGKILL", "SIGTERM"} else ""
    if signal and not cause:
        cause = f" ({signal})"
    error = f": {state['Error']}" if state.get("Error") else ""
    return f"exited with code {code}{cause}{error}"


def parse_time(value: Any) -> datetime | None:
    """Docker's RFC 3339 times (nanoseconds, ``Z``); its zero time and junk are ``None``."""
    if not value or not isinstance(value, str) or value.startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
