"""A batch scheduler as data (after Funnel's ``compute/slurm`` and dask-jobqueue's ``SLURMJob``).

A :class:`Scheduler` is the commands that submit, cancel and query a job, the parsers for their
answers, one table from its job states to pfcon's, and how a job's resources become script
directives. :mod:`pfcon.compute.batch.slurm` fills one in; :class:`~pfcon.compute.batch.backend.BatchBackend`
runs any of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pfcon.compute.base import JobSpec, JobStatus
from pfcon.compute.batch.jobfiles import JobFiles
from pfcon.errors import InvalidJob

#: a job's env entry that overrides TIMELIMIT_MINUTES for that job
TIMELIMIT_ENV = "TIMELIMIT_MINUTES"


@dataclass(frozen=True)
class QueueState:
    """What the scheduler says of a job: its state word and, if any, a reason."""

    state: str
    reason: str = ""


@dataclass(frozen=True)
class BatchOptions:
    """Site settings every batch scheduler understands."""

    time_limit_minutes: int | None = None
    queue: str | None = None
    extra_options: tuple[str, ...] = ()
    accounting: bool = False
    check_images: bool = True
    command_timeout: float = 20.0
    cancel_wait: float = 30.0


@dataclass(frozen=True)
class Scheduler:
    """One batch scheduler, as data."""

    name: str
    template: str
    submit: tuple[str, ...]
    cancel: tuple[str, ...]
    query: tuple[str, ...]
    ping: tuple[str, ...]
    version: tuple[str, ...]
    parse_job_id: Callable[[str], str | None]
    parse_state: Callable[[str], QueueState | None]
    parse_ping: Callable[[str], bool]
    #: scheduler state -> (status, message template with {id} {reason} {limit} {name})
    states: Mapping[str, tuple[JobStatus, str]]
    #: terminal states that name why a job was stopped by a signal
    stop_reasons: frozenset[str]
    unavailable: re.Pattern[str]
    unknown_job: re.Pattern[str]
    directives: Callable[[JobSpec, JobFiles, BatchOptions, int | None], list[str]]
    accounting: tuple[str, ...] | None = None
    parse_accounting: Callable[[str], QueueState | None] | None = None
    #: one query for many jobs (their ids comma-joined after it) and its parser: job id -> state
    query_many: tuple[str, ...] | None = None
    parse_states: Callable[[str], dict[str, QueueState]] | None = None

    def is_active(self, queue: QueueState | None) -> bool:
        """Queued or running: the job may still start or write."""
        entry = self.states.get(queue.state) if queue else None
        return entry is not None and entry[0] in (JobStatus.notStarted, JobStatus.started)


def time_limit(spec: JobSpec, default: int | None) -> int | None:
    """The job's time limit in minutes: its own ``TIMELIMIT_MINUTES`` env entry, else the site's."""
    value = spec.env.get(TIMELIMIT_ENV)
    if value is None:
        return default
    if not value.strip().isdigit() or int(value) < 1:
        raise InvalidJob(f"env: {TIMELIMIT_ENV} must be a whole number of minutes, at least 1, got {value!r}")
    return int(value)
