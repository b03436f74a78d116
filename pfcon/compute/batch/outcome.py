"""How a batch job stands: one decision from the scheduler's word and the files its script wrote.

While the scheduler knows a job, its state maps through the scheduler's table; once the
container ended, the script's ``status`` file says how (exit code, out of memory), and for a
container stopped by a signal (scancel, time limit) the scheduler's final state says why. A job
the scheduler has forgotten that left no status is an error. Pure functions, tested alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pfcon.compute.base import JobStatus
from pfcon.compute.batch.scheduler import QueueState, Scheduler


def decide(
    scheduler: Scheduler,
    record: Mapping[str, Any],
    queue: QueueState | None,
    status_file: Mapping[str, str] | None,
    started: Mapping[str, str],
) -> tuple[JobStatus, str]:
    """One decision from the scheduler's state and the files the script wrote."""
    if status_file is not None:
        if not status_file.get("signal"):
            return exit_outcome(status_file, record.get("memory_mib"))
        if scheduler.is_active(queue):  # stopping: wait for the scheduler to say why
            return JobStatus.started, f"stopping after SIG{status_file['signal']}"
        return JobStatus.finishedWithError, stop_reason(scheduler, record, queue, status_file, started)
    if queue is None:
        return JobStatus.finishedWithError, (
            f"{scheduler.name} no longer knows job {record['job_id']} and it recorded no exit status: "
            "its node failed, or it was cancelled before it started"
        )
    return from_table(scheduler, record, queue, started)


def from_table(
    scheduler: Scheduler,
    record: Mapping[str, Any],
    queue: QueueState,
    started: Mapping[str, str] | None = None,
) -> tuple[JobStatus, str]:
    entry = scheduler.states.get(queue.state)
    if entry is None:
        return JobStatus.undefined, f"unexpected {scheduler.name} state {queue.state!r}"
    status, template = entry
    message = template.format(
        id=record["job_id"],
        reason=f" ({queue.reason})" if queue.reason else "",
        limit=record.get("time_limit_minutes") or "its",
        name=scheduler.name,
        node=(started or {}).get("node", "its node"),
    )
    return status, message


def stop_reason(
    scheduler: Scheduler,
    record: Mapping[str, Any],
    queue: QueueState | None,
    status_file: Mapping[str, str],
    started: Mapping[str, str],
) -> str:
    if queue is not None and queue.state in scheduler.stop_reasons:
        return from_table(scheduler, record, queue)[1]
    limit = record.get("time_limit_minutes")
    ran = _seconds_between(started.get("started_at"), status_file.get("finished_at"))
    if limit and ran is not None and ran >= limit * 60:
        return f"timeout: the job reached its time limit of {limit} minutes and was stopped"
    return f"stopped by SIG{status_file['signal']}: cancelled, preempted or its node was shut down"


def exit_outcome(status_file: Mapping[str, str], memory_mib: int | None) -> tuple[JobStatus, str]:
    """How a container that ended by itself ended, from the script's status file."""
    code = status_file.get("exit_code", "")
    limit = f" of {memory_mib} MiB" if memory_mib else ""
    if status_file.get("oom") == "true":
        return (
            JobStatus.finishedWithError,
            f"out of memory: the job was killed for exceeding its memory limit{limit}",
        )
    if status_file.get("oom") == "likely":
        return (
            JobStatus.finishedWithError,
            f"out of memory (most likely): the job was killed with SIGKILL under its memory "
            f"limit{limit}; this runtime does not report out-of-memory kills directly",
        )
    if code == "0":
        return JobStatus.finishedSuccessfully, "exited"
    return JobStatus.finishedWithError, f"exited with code {code or 'unknown'}"


def _seconds_between(start: str | None, end: str | None) -> float | None:
    try:
        return (datetime.fromisoformat(end or "") - datetime.fromisoformat(start or "")).total_seconds()
    except ValueError:
        return None
