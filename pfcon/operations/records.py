"""Operation records: what pfcon knows of each copy, upload and delete operation.

pfcon 6 keeps no state of its own (its engine objects are the record), so a skipped or
garbage-collected operation answers 404 and ChRIS loops. Here every operation has a record
from its POST on, kept until its ``DELETE``: status, timestamps, parameters, the process
that runs it, and a short human-readable log.

:class:`OperationStore` is the small interface the runner uses; :class:`StoreOperationStore`
keeps each operation as a row of the job store (outside the job folder, so a record outlives
the data it deleted; one job is one job whichever API created it), with ``flock`` locks so
every gunicorn worker and a restarted service agree.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from pfcon.compute.base import JobStatus
from pfcon.settings import STATE_DIR
from pfcon.store import JobRow, JobStore, NewJob
from pfcon.store.repository import FINISHED, QUEUED, STARTED, rfc3339, utc_now
from pfcon.storebase import validate_jid

KINDS = ("copy", "upload", "delete")  # the store's kinds besides "plugin"
ACTIVE = (JobStatus.notStarted.value, JobStatus.started.value)
MAX_LOG_LINES = 40
RECORDS_LOCK = ".records.lock"
RUN_LOCK = ".run.lock"


def now_text() -> str:
    """RFC 3339 in UTC with a ``Z``, like the engines' own timestamps."""
    return rfc3339(utc_now())


def _start_time(pid: int) -> str | None:
    """The kernel's start time of a process (ticks since boot): with the pid, unique per boot."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def this_process() -> str:
    """Who runs an operation: ``host:pid:start-time`` (a dead owner's operations are redone)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def owner_alive(owner: str) -> bool:
    """Whether the process that claimed an operation still runs.

    The start time tells a live owner from a new process that got the same pid after a
    restart. Another host's process is assumed alive: only its own replica may redo it.
    """
    host, _, rest = owner.partition(":")
    pid, _, started = rest.partition(":")
    if not host or not pid.isdigit():
        return False
    if host != socket.gethostname():
        return True
    return _start_time(int(pid)) == started


@dataclass(frozen=True)
class Operation:
    """One copy, upload or delete operation of a job."""

    jid: str
    kind: str
    status: str = JobStatus.notStarted.value
    message: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    started_at: str = ""
    finished_at: str = ""
    log: tuple[str, ...] = ()
    owner: str = ""
    attempt: int = 1
    row_id: int | None = field(default=None, compare=False)  # the store's row, once it has one

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def redoable(self) -> bool:
        """pfcon 6 runs a failed or undefined operation again when it is POSTed again."""
        return self.status in (JobStatus.finishedWithError.value, JobStatus.undefined.value)

    def logged(self, line: str) -> Operation:
        """This record with one more log line (the last :data:`MAX_LOG_LINES` are kept)."""
        return replace(self, log=(*self.log, line)[-MAX_LOG_LINES:])


class OperationStore(Protocol):
    """Where operation records live (the job store; a small interface the runner needs)."""

    def load(self, jid: str, kind: str) -> Operation | None: ...

    def save(self, op: Operation) -> Operation:
        """Write the record; returns it as stored (with its row)."""

    def advance(self, op: Operation, expected: str) -> bool:
        """Write the record only if its stored status is still ``expected``."""

    def remove(self, jid: str, kind: str) -> bool: ...

    def active(self) -> Iterator[Operation]: ...

    def lock(self, jid: str) -> contextlib.AbstractContextManager[None]:
        """Exclusive, short: check-then-act on one job's records (every POST holds it)."""

    def run_lock(self, jid: str) -> contextlib.AbstractContextManager[None]:
        """Exclusive, long: one operation of a job runs at a time."""


class StoreOperationStore:
    """Operation records as rows of the job store (``kind`` copy/upload/delete, ``api`` pfcon6).

    One live row per job and kind; a redone operation (a new attempt) puts the old row into
    the history and starts a new one, so ``history/`` shows every attempt with its events.
    The locks are ``flock`` files under ``storeBase/.pfcon/operations/<jid>/`` (shared by
    every worker process on this host), removed with the job's last live operation.
    """

    def __init__(self, store: JobStore, storebase_root: Path) -> None:
        self.store = store
        self.root = storebase_root / STATE_DIR / "operations"  # made on first use

    def _folder(self, jid: str) -> Path:
        return self.root / validate_jid(jid)

    def load(self, jid: str, kind: str) -> Operation | None:
        row = self.store.live(validate_jid(jid), _kind(kind))
        return None if row is None else _operation(row)

    def save(self, op: Operation) -> Operation:
        row_id = op.row_id if op.row_id is not None else self._live_attempt(op)
        if row_id is None:  # a new operation or attempt: one write, the attempt before to history
            row = self.store.accept(
                _new_row(op),
                replace_live=True,
                state=STATE_OF[op.status],
                status=op.status,
                **self._columns(op),
            )
            return replace(op, row_id=row.id)
        self.store.record_operation(row_id, STATE_OF[op.status], op.status, op.message, **self._columns(op))
        return replace(op, row_id=row_id)

    def advance(self, op: Operation, expected: str) -> bool:
        if op.row_id is None:
            raise ValueError("advance needs a stored operation")
        state, columns = STATE_OF[op.status], self._columns(op)
        return self.store.record_operation(
            op.row_id, state, op.status, op.message, only_if_status=expected, **columns
        )

    @staticmethod
    def _columns(op: Operation) -> dict[str, Any]:
        return {
            "spec": {"params": op.params, "attempt": op.attempt},
            "logs": "\n".join(op.log),
            "owner": op.owner,
            "started_at": _when(op.started_at),
            "finished_at": _when(op.finished_at),
        }

    def _live_attempt(self, op: Operation) -> int | None:
        """The live row of this attempt (None: a new operation, or a new attempt)."""
        row = self.store.live(op.jid, _kind(op.kind))
        if row is None or (row.spec or {}).get("attempt") != op.attempt:
            return None
        return row.id

    def remove(self, jid: str, kind: str) -> bool:
        """Put the operation into the history; the lock folder goes with the job's last one."""
        gone = self.store.tombstone(validate_jid(jid), _kind(kind)) is not None
        if all(self.store.live(jid, other) is None for other in KINDS):
            shutil.rmtree(self._folder(jid), ignore_errors=True)
        return gone

    def active(self) -> Iterator[Operation]:
        for kind in KINDS:
            for row in (*self.store.queued(kind), *self.store.running(kind)):
                yield _operation(row)

    @contextlib.contextmanager
    def lock(self, jid: str) -> Iterator[None]:
        with self._flock(jid, RECORDS_LOCK):
            yield

    @contextlib.contextmanager
    def run_lock(self, jid: str) -> Iterator[None]:
        with self._flock(jid, RUN_LOCK):
            yield

    @contextlib.contextmanager
    def _flock(self, jid: str, name: str) -> Iterator[None]:
        folder = self._folder(jid)
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / name, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


#: an operation's status -> the store's lifecycle state
STATE_OF = {
    JobStatus.notStarted.value: QUEUED,
    JobStatus.started.value: STARTED,
    JobStatus.finishedSuccessfully.value: FINISHED,
    JobStatus.finishedWithError.value: FINISHED,
    JobStatus.undefined.value: FINISHED,
}


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown operation kind {kind!r}")
    return kind


def _when(text: str) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _new_row(op: Operation) -> NewJob:
    params = op.params
    inputs = params.get("input_dirs") or ()
    return NewJob(
        jid=op.jid,
        kind=op.kind,
        api="pfcon6",
        cmd=f"pfcon {op.kind} operation",
        cpu_millicores=params.get("cpu_limit"),
        memory_mib=params.get("memory_limit"),
        input_path=",".join(inputs) or None,
        output_path=params.get("output_dir") or params.get("job_output_path"),
        message=op.message,
    )


def _operation(row: JobRow) -> Operation:
    spec = row.spec or {}
    return Operation(
        jid=row.jid,
        kind=row.kind,
        status=row.status,
        message=row.message,
        params=dict(spec.get("params") or {}),
        created_at=rfc3339(row.accepted_at),
        started_at=rfc3339(row.started_at),
        finished_at=rfc3339(row.finished_at),
        log=tuple((row.logs or "").splitlines()),
        owner=row.owner or "",
        attempt=int(spec.get("attempt", 1)),
        row_id=row.id,
    )
