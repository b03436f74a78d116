"""The job record: what pfcon itself knows of a job, kept beside its data in storeBase.

The engine is the truth about a running container, but between acceptance (201) and the
container's creation, or after a start that failed, only pfcon knows the job. The record is
one small JSON file ``key-<jid>/job.json`` (never mounted into the job), written atomically,
so every worker process and a restarted service see the same thing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pfcon.storebase import StoreBase

ACCEPTED = "accepted"
SUBMITTED = "submitted"
FAILED = "failed"
RECORD_NAME = "job.json"
START_LOCK = ".start.lock"


def utc_now() -> str:
    """RFC 3339 in UTC with a ``Z``, like the engine's own timestamps."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class JobRecord:
    jid: str
    image: str
    cmd: str
    state: str = ACCEPTED
    message: str = ""
    accepted_at: str = ""
    spec: dict[str, Any] | None = None  # the JobSpec, to start the job after a restart


class JobRecords:
    """Read and write job records under storeBase."""

    def __init__(self, storebase: StoreBase) -> None:
        self.storebase = storebase

    def save(self, record: JobRecord) -> None:
        job_dir = self.storebase.job_dir(record.jid)
        fd, tmp = tempfile.mkstemp(dir=job_dir, prefix=".job-", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(record), handle)
        os.replace(tmp, job_dir / RECORD_NAME)

    def load(self, jid: str) -> JobRecord | None:
        try:
            with (self.storebase.job_dir(jid) / RECORD_NAME).open() as handle:
                return JobRecord(**json.load(handle))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (ValueError, TypeError):
            return JobRecord(jid=jid, image="", cmd="", state=FAILED, message="the job record is unreadable")

    def accepted(self) -> Iterator[str]:
        """Jobs recorded as accepted but not (yet) started, e.g. when the service stopped."""
        for path in self.storebase.root.glob(f"key-*/{RECORD_NAME}"):
            record = self.load(path.parent.name.removeprefix("key-"))
            if record is not None and record.state == ACCEPTED:
                yield record.jid

    @contextlib.contextmanager
    def start_lock(self, jid: str) -> Iterator[bool]:
        """An exclusive, non-blocking lock on starting ``jid``, across threads and processes.

        Yields whether it was acquired; the kernel drops it if the holder dies.
        """
        try:
            fd = os.open(self.storebase.job_dir(jid) / START_LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        except (FileNotFoundError, NotADirectoryError):
            yield False  # the job was deleted
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def update(self, jid: str, state: str, message: str = "") -> None:
        """Record a state change, unless the job was deleted meanwhile."""
        record = self.load(jid)
        if record is None:
            return
        with contextlib.suppress(FileNotFoundError):  # deleted between load and save
            self.save(replace(record, state=state, message=message))
