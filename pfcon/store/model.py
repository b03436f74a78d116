"""The store's values: lifecycle states, client statuses, rows, events and history queries.

Plain data and small helpers, shared by the repository (:mod:`pfcon.store.repository`), the
job service and the HTTP modules; nothing here talks to the database.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from pfcon.errors import InvalidInput
from pfcon.store.tables import jobs

# lifecycle states
ACCEPTED = "accepted"
QUEUED = "queued"
STARTED = "started"
FINISHED = "finished"
DELETED = "deleted"
STATES = (ACCEPTED, QUEUED, STARTED, FINISHED, DELETED)
# client statuses (pfcon.compute.base.JobStatus values)
NOT_STARTED = "notStarted"
FINISHED_OK = "finishedSuccessfully"
FINISHED_ERROR = "finishedWithError"
UNDEFINED = "undefined"
STATUSES = ("notStarted", "started", FINISHED_OK, FINISHED_ERROR, UNDEFINED)
KINDS = ("plugin", "copy", "upload", "delete")
APIS = ("classic", "pfcon6")
LOG_TAIL_BYTES = 64 * 1024
MAX_PAGE = 500
#: a claim older than this is taken to be a dead holder's (a start is one engine call)
CLAIM_LEASE = timedelta(minutes=5)


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(when: datetime | None) -> str:
    """RFC 3339 in UTC with a ``Z``, like the engines' own timestamps."""
    return "" if when is None else when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def process_owner() -> str:
    """Who holds a claim: ``host:pid``, so a dead holder on this host is recognised."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_is_dead(owner: str | None) -> bool:
    """Whether ``owner`` was a process on this host that no longer runs."""
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass(frozen=True)
class NewJob:
    """What is known of a job when it is accepted."""

    jid: str
    kind: str = "plugin"
    api: str = "classic"
    image: str = ""
    cmd: str = ""
    auid: str = ""
    container_user: str | None = None
    cpu_millicores: int | None = None
    memory_mib: int | None = None
    gpus: int = 0
    number_of_workers: int = 1
    input_path: str | None = None
    output_path: str | None = None
    message: str = ""


@dataclass(frozen=True)
class JobRow:
    """One job as the store holds it."""

    id: int
    jid: str
    kind: str
    api: str
    state: str
    status: str
    message: str
    image: str
    cmd: str
    spec: dict[str, Any] | None
    auid: str
    container_user: str | None
    cpu_millicores: int | None
    memory_mib: int | None
    gpus: int
    number_of_workers: int
    input_path: str | None
    output_path: str | None
    engine_id: str | None
    exit_code: int | None
    timestamp: str | None
    logs: str | None
    owner: str | None
    claimed_at: datetime | None
    retry_at: datetime | None
    waiting_since: datetime | None
    accepted_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    deleted_at: datetime | None
    updated_at: datetime

    @property
    def claimed(self) -> bool:
        return self.claimed_at is not None

    @property
    def wait_seconds(self) -> float | None:
        """From acceptance to the start (or to now, for a job still waiting)."""
        if self.started_at is not None:
            return (self.started_at - self.accepted_at).total_seconds()
        return None

    @property
    def run_seconds(self) -> float | None:
        if self.started_at is not None and self.finished_at is not None:
            return (self.finished_at - self.started_at).total_seconds()
        return None


@dataclass(frozen=True)
class Event:
    """One state change of a job."""

    id: int
    job_id: int
    state: str
    status: str
    message: str
    at: datetime


@dataclass(frozen=True)
class HistoryQuery:
    """Filters and a page of ``GET history/``; ``cursor`` is the previous page's ``next``."""

    status: str | None = None
    state: str | None = None
    auid: str | None = None
    image: str | None = None
    jid: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    cursor: str | None = None
    search: str | None = None  # part of the jid, image or auid (the dashboard's search box)


@dataclass(frozen=True)
class HistoryPage:
    items: list[JobRow]  # without their spec and log tail
    next_cursor: str | None


_JOB_FIELDS = tuple(f.name for f in fields(JobRow))
_WHEN_FIELDS = tuple(c.name for c in jobs.c if isinstance(c.type, sa.DateTime))
#: what a history page shows: no job spec, no log tail
_LISTED = [c for c in jobs.c if c.name not in ("spec", "logs")]


def _aware(value: Any) -> Any:
    """SQLite gives naive datetimes back; everything the store writes is UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _row(mapping: Mapping[str, Any]) -> JobRow:
    values = {name: mapping.get(name) for name in _JOB_FIELDS}
    for name in _WHEN_FIELDS:
        values[name] = _aware(values[name])
    return JobRow(**values)


def encode_cursor(job_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": job_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        before = json.loads(base64.urlsafe_b64decode(padded.encode()))["before"]
    except (ValueError, KeyError, TypeError):
        raise InvalidInput("cursor: not a cursor this service issued") from None
    if not isinstance(before, int) or before < 0:
        raise InvalidInput("cursor: not a cursor this service issued")
    return before


def _tail(text: str | None) -> str | None:
    if text is None:
        return None
    data = text.encode("utf-8", "replace")
    if len(data) <= LOG_TAIL_BYTES:
        return text
    return data[-LOG_TAIL_BYTES:].decode("utf-8", "ignore")


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``check`` until it holds or ``timeout`` passes (used to wait for a claim to end)."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
