"""The job store: every job, every pfcon 6 operation and every state change, in one database.

How to use the store
--------------------
``JobStore`` is the one object that reads and writes it; build it with
:func:`pfcon.store.open_store` (the schema is migrated by :func:`pfcon.store.prepare`, once at
start-up). Every method is one short transaction and raises only domain errors:
``StoreUnavailable`` (503) when the database does not answer, ``InsufficientStorage`` (507)
when SQLite's disk is full, ``JobExists`` (409) for a second live row of one jid and kind.

* **Record a job or an operation.** ``accept(NewJob(...))`` inserts a row in state
  ``accepted`` (the jid is now taken); ``queue(job_id, spec)`` once its input is staged; or
  ``forget(job_id)`` if the submission was refused after all (it leaves no history). pfcon 6's
  operations are rows too: ``NewJob(kind="copy", api="pfcon6", ...)``, progress is
  ``note(job_id, "copied 12 000/20 000 files, 1.2 GiB")``, and an operation that runs in pfcon
  goes ``mark_started`` -> ``mark_finished`` itself (no ``queue``/``claim`` needed).
* **Start queued jobs exactly once.** ``claim(owner, limit)`` hands out the oldest due queued
  plugin jobs, each to one caller across processes and replicas (``FOR UPDATE SKIP LOCKED``
  on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite). The claimer then calls ``mark_started``,
  ``mark_finished`` (a failed start) or ``wait_for_engine`` (back to the queue until
  ``retry_at``); each returns False if the job was deleted meanwhile, and ``unclaim`` lets go.
  An admission policy reads ``queued()`` (in order, with resources) and ``running()``, decides,
  and takes one job with ``claim_job(job_id, owner)``; or, to decide and claim under one lock
  across processes and replicas, ``admit(owner, choose)`` (what pfcon's queue does), with
  ``note_many`` for the waiting jobs' messages.
* **Read.** ``live(jid, kind)`` is the job a client means by its jid; ``history(HistoryQuery)``
  pages through all rows newest first (``next_cursor``); ``events(job_id)`` its state changes;
  ``counts()`` jobs by status for metrics and dashboards.
* **Delete.** ``tombstone(jid, kind)`` marks the live row deleted first, so no start can
  follow; ``restore(row, reason)`` undoes it if the engine or the data could not be removed.
  ``prune(before)`` drops deleted rows older than the history window.

The store never holds job data or logs in bulk: at most a capped final log tail of a
finished job, dropped when the job is deleted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pfcon.store import database
from pfcon.store.model import (
    _LISTED,
    ACCEPTED,
    APIS,
    CLAIM_LEASE,
    DELETED,
    FINISHED,
    FINISHED_ERROR,
    FINISHED_OK,
    KINDS,
    LOG_TAIL_BYTES,
    MAX_PAGE,
    NOT_STARTED,
    QUEUED,
    STARTED,
    STATES,
    STATUSES,
    UNDEFINED,
    Event,
    HistoryPage,
    HistoryQuery,
    JobRow,
    NewJob,
    _aware,
    _row,
    _tail,
    decode_cursor,
    encode_cursor,
    owner_is_dead,
    process_owner,
    rfc3339,
    utc_now,
    wait_until,
)
from pfcon.store.tables import job_events, jobs

#: the values are also importable from here, where the repository's users first look
__all__ = [
    "ACCEPTED",
    "ADMITTED_MESSAGE",
    "APIS",
    "CLAIM_LEASE",
    "DELETED",
    "FINISHED",
    "FINISHED_ERROR",
    "FINISHED_OK",
    "KINDS",
    "LOG_TAIL_BYTES",
    "MAX_PAGE",
    "NOT_STARTED",
    "QUEUED",
    "STARTED",
    "STATES",
    "STATUSES",
    "UNDEFINED",
    "Event",
    "HistoryPage",
    "HistoryQuery",
    "JobRow",
    "JobStore",
    "NewJob",
    "decode_cursor",
    "encode_cursor",
    "owner_is_dead",
    "process_owner",
    "rfc3339",
    "utc_now",
    "wait_until",
]
#: the event of a job the admission queue took (its resources are reserved from then on)
ADMITTED_MESSAGE = "admitted: its resources are reserved, starting it"
#: PostgreSQL advisory lock key serialising admission decisions across replicas ("pfcqueue")
ADMISSION_LOCK = 0x7066637175657565


#: built once: a status poll is this one statement
_LIVE = sa.select(jobs).where(
    jobs.c.jid == sa.bindparam("jid"), jobs.c.kind == sa.bindparam("kind"), jobs.c.state != DELETED
)
_LIVE_FOR_UPDATE = _LIVE.with_for_update()
#: what an accept sets (besides ``initial``): its statements are built once, values bound
_ACCEPTED_COLUMNS = (
    *(f.name for f in fields(NewJob)),
    "state",
    "status",
    "owner",
    "accepted_at",
    "updated_at",
)
_EVENT_COLUMNS = ("job_id", "state", "status", "message", "at")


def _bound(names: Iterable[str]) -> dict[str, sa.BindParameter[Any]]:
    """A ``VALUES``/``SET`` clause of parameters named ``v_<column>`` (a bound parameter may
    not share its column's name)."""
    return {name: sa.bindparam(f"v_{name}") for name in names}


def _event_of(job_id: sa.ColumnElement[Any]) -> sa.Insert:
    """An ``INSERT`` of the event (``e_state``, ``e_status``, ``e_message``, ``e_at``) of each
    job ``job_id`` selects from a data-changing ``WITH``."""
    values = [sa.bindparam(f"e_{name}", type_=job_events.c[name].type) for name in _EVENT_COLUMNS[1:]]
    return sa.insert(job_events).from_select(_EVENT_COLUMNS, sa.select(job_id, *values))


def _event_values(state: str, status: str, message: str, at: datetime) -> dict[str, Any]:
    return {"e_state": state, "e_status": status, "e_message": message, "e_at": at}


_INSERT_JOB = sa.insert(jobs).values(_bound(_ACCEPTED_COLUMNS)).returning(*jobs.c)
_INSERTED = _INSERT_JOB.cte("inserted")
#: PostgreSQL: this statement's own transaction commits without waiting for its WAL to reach
#: the disk (``SET LOCAL synchronous_commit``, as a function: the statement is its transaction)
_ASYNC_COMMIT = sa.func.set_config("synchronous_commit", "off", True).is_not(None)
#: PostgreSQL: the job and its first event in one statement, committed asynchronously
_ACCEPT_IN_ONE = sa.select(_INSERTED).add_cte(_event_of(_INSERTED.c.id).cte("event")).where(_ASYNC_COMMIT)
_INSERT_EVENT = sa.insert(job_events).values(
    job_id=sa.bindparam("e_job_id"), **{name: sa.bindparam(f"e_{name}") for name in _EVENT_COLUMNS[1:]}
)


class JobStore:
    """The repository over the store's database (see the module docstring)."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url
        self.name = database.describe(url)
        self.sqlite = database.is_sqlite(url)
        self._folder = database.sqlite_folder(url)

    # -- transactions ---------------------------------------------------------------------
    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """One statement, or a few that need not agree: no transaction (no BEGIN, no ROLLBACK)."""
        with database.translated(f"the job store ({self.name})", self._folder), self.engine.connect() as conn:
            if not self.sqlite:  # SQLite's reads are autocommit already (see database.py)
                conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with database.translated(f"the job store ({self.name})", self._folder), self.engine.connect() as conn:
            conn.execution_options(**{database.WRITE: True})
            with conn.begin():
                yield conn

    def ping(self) -> str:
        """A short description for the health check; raises StoreUnavailable if it does not answer."""
        with self._read() as conn:
            conn.execute(sa.text("SELECT 1"))
        return self.name

    def close(self) -> None:
        self.engine.dispose()

    # -- recording --------------------------------------------------------------------------
    def accept(
        self, new: NewJob, owner: str | None = None, replace_live: bool = False, **initial: Any
    ) -> JobRow:
        """Insert the job in state ``accepted``; JobExists if its jid has a live row of this kind.

        ``initial`` sets other columns at once (an operation is queued with its parameters
        in the same write: ``state``, ``spec``, ``logs``). ``replace_live`` puts the live row
        of the jid and kind into the history in the same write (an operation's new attempt),
        so no reader ever finds neither.
        """
        if new.kind not in KINDS or new.api not in APIS:
            raise ValueError(f"unknown kind {new.kind!r} or api {new.api!r}")
        now = utc_now()
        values = {
            **{f.name: getattr(new, f.name) for f in fields(NewJob)},
            "state": ACCEPTED,
            "status": NOT_STARTED,
            "owner": owner or process_owner(),
            "accepted_at": now,
            "updated_at": now,
            **initial,
        }
        if not initial and not replace_live:
            return self._accept_bound(values, new.message)
        with self._write() as conn:
            if replace_live:
                self._bury_live(conn, new.jid, new.kind, now)
            inserted = conn.execute(sa.insert(jobs).values(**values).returning(*jobs.c)).one()
            row = _row(inserted._mapping)
            self._event(conn, row.id, values["state"], values["status"], new.message, now)
            return row

    def _accept_bound(self, values: dict[str, Any], message: str) -> JobRow:
        """A plain accept through statements built once (building them cost more than running
        them). On PostgreSQL the row and its event are one statement, its own transaction: one
        round trip instead of BEGIN, two INSERTs and COMMIT, each of which costs the database's
        process a wake-up that on a busy host waits for a core.

        On PostgreSQL that commit does not wait for the disk: its record is durable with the
        next synchronous commit on the server, at the latest the job's own ``queue`` (or
        ``forget``) before the client has its answer, as the write-ahead log is flushed in
        order. A server crash in between loses an accepted row whose submit then fails (503)
        and removes what it staged: nothing had been promised. Back to back, a submit on a
        host busy starting containers waits mostly for these flushes (docs/store.md, sixth
        session: the accept's wait fell; end to end the gain was within the runs' spread)."""
        bound = {f"v_{name}": value for name, value in values.items()}
        if not self.sqlite:
            event = _event_values(values["state"], values["status"], message, values["accepted_at"])
            with self._read() as conn:
                return _row(conn.execute(_ACCEPT_IN_ONE, {**bound, **event}).one()._mapping)
        with self._write() as conn:
            row = _row(conn.execute(_INSERT_JOB, bound).one()._mapping)
            self._event(conn, row.id, row.state, row.status, message, values["accepted_at"])
            return row

    def queue(self, job_id: int, spec: Mapping[str, Any] | None, message: str = "") -> bool:
        """Staged: the job waits to be started. False if it was deleted meanwhile."""
        return self._change(
            job_id,
            (ACCEPTED,),
            QUEUED,
            NOT_STARTED,
            message or "queued, waiting to be started",
            spec=dict(spec) if spec is not None else None,
            owner=None,
            queued_at=utc_now(),
        )

    def forget(self, job_id: int) -> None:
        """Remove a row whose submission was refused: it was never a job."""
        with self._write() as conn:
            conn.execute(sa.delete(job_events).where(job_events.c.job_id == job_id))
            conn.execute(sa.delete(jobs).where(jobs.c.id == job_id))

    def note(self, job_id: int, message: str) -> None:
        """A progress message (no state change, no event): e.g. an operation's counts."""
        with self._write() as conn:
            conn.execute(
                sa.update(jobs).where(jobs.c.id == job_id).values(message=message, updated_at=utc_now())
            )

    def mark_started(
        self, job_id: int, message: str = "", owner: str | None = None, engine_id: str | None = None
    ) -> bool:
        """Handed to the engine (or an operation began), with the engine's own id of the job
        where it gave one (recorded in the same write). False if deleted meanwhile."""
        return self._change(
            job_id,
            (QUEUED, ACCEPTED),
            STARTED,
            "started",
            message,
            owner=owner,
            started_at=utc_now(),
            claimed_at=None,
            **({"engine_id": engine_id} if engine_id else {}),
        )

    def mark_finished(
        self,
        job_id: int,
        status: str,
        message: str,
        exit_code: int | None = None,
        logs: str | None = None,
        timestamp: str | None = None,
        owner: str | None = None,
    ) -> bool:
        """Record the terminal status once; False if already finished or deleted.

        ``undefined`` is recorded for a job whose engine object vanished while it ran.
        """
        if status not in (FINISHED_OK, FINISHED_ERROR, UNDEFINED):
            raise ValueError(f"not a terminal status to record: {status!r}")
        return self._change(
            job_id,
            (ACCEPTED, QUEUED, STARTED),
            FINISHED,
            status,
            message,
            owner=owner,
            exit_code=exit_code,
            timestamp=timestamp,
            logs=_tail(logs),
            finished_at=utc_now(),
            claimed_at=None,
        )

    def record_operation(
        self,
        job_id: int,
        state: str,
        status: str,
        message: str,
        only_if_status: str | None = None,
        **values: Any,
    ) -> bool:
        """An operation's own bookkeeping (pfcon 6's copy, upload, delete run inside pfcon).

        Sets the columns whatever the live state (the operation runner decides the order),
        or only while the status is ``only_if_status``; an event is written only when the
        state or status changes, not for a progress line. False if the row was deleted (or
        its status moved on) meanwhile.
        """
        now = utc_now()
        if "logs" in values:
            values["logs"] = _tail(values["logs"])
        with self._write() as conn:
            before = self._get(conn, job_id)
            if before is None or before.state == DELETED:
                return False
            where = [jobs.c.id == job_id, jobs.c.state != DELETED]
            if only_if_status is not None:
                where.append(jobs.c.status == only_if_status)  # in the UPDATE itself: atomic
            done = conn.execute(
                sa.update(jobs)
                .where(*where)
                .values(state=state, status=status, message=message, updated_at=now, **values)
            ).rowcount
            if not done:
                return False
            if (before.state, before.status) != (state, status):
                self._event(conn, job_id, state, status, message, now)
        return True

    # -- starting exactly once --------------------------------------------------------------
    def claim(self, owner: str, limit: int, kind: str = "plugin") -> list[JobRow]:
        """The oldest due queued jobs of ``kind``, each claimed by ``owner`` alone."""
        if limit <= 0:
            return []
        now = utc_now()
        due = self._due(kind, now).limit(limit)
        with self._read() as conn:  # most polls find nothing: no write lock for them
            if conn.scalars(due).first() is None:
                return []
        if not self.sqlite:
            due = due.with_for_update(skip_locked=True)
        with self._write() as conn:
            ids = list(conn.scalars(due))
            return self._claim_ids(conn, ids, owner, now) if ids else []

    def claim_job(self, job_id: int, owner: str) -> JobRow | None:
        """Claim one queued job (for an admission policy that picked it); None if taken."""
        with self._write() as conn:
            rows = self._claim_ids(conn, [job_id], owner, utc_now())
            return rows[0] if rows else None

    def _claim_ids(self, conn: Connection, ids: list[int], owner: str, now: datetime) -> list[JobRow]:
        claimed = conn.execute(
            sa.update(jobs)
            .where(jobs.c.id.in_(ids), jobs.c.state == QUEUED, jobs.c.claimed_at.is_(None))
            .values(owner=owner, claimed_at=now, retry_at=None)
            .returning(jobs)
        )
        return sorted((_row(r._mapping) for r in claimed), key=lambda row: row.id)

    def admit(
        self,
        owner: str,
        choose: Callable[[list[JobRow], list[JobRow]], Mapping[int, Sequence[str]]],
        kind: str = "plugin",
    ) -> list[JobRow]:
        """Claim the jobs ``choose(holding, waiting)`` picks, deciding under one lock.

        ``holding`` are the jobs that hold resources (started, or claimed to be started) and
        ``waiting`` the due queued jobs in queue order. ``choose`` maps each job to claim to
        the GPU IDs it gets (none for most), which go into its spec, so the next decision
        sees them taken. Each claimed job gets an ``admitted`` event, so the history shows
        when its turn came (its start follows the engine's pace). The decision and the
        claims are one transaction under a lock that every process and replica takes
        (SQLite's write lock, a PostgreSQL advisory lock), so two schedulers never hand out
        the same free share.
        """
        now = utc_now()
        with self._write() as conn:
            if not self.sqlite:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(ADMISSION_LOCK)))
            holding, waiting = self._admission_rows(conn, kind, now)
            chosen = choose(holding, waiting)
            claimed = self._claim_ids(conn, list(chosen), owner, now) if chosen else []
            for row in claimed:
                self._event(conn, row.id, QUEUED, NOT_STARTED, ADMITTED_MESSAGE, now)
            return [self._give_gpus(conn, row, chosen[row.id]) for row in claimed]

    @staticmethod
    def _give_gpus(conn: Connection, row: JobRow, gpu_devices: Sequence[str]) -> JobRow:
        """Name in the job's spec the GPUs it was given (a spec that names none keeps its own)."""
        if not gpu_devices or row.spec is None:
            return row
        resources = {**row.spec.get("resources", {}), "gpu_devices": list(gpu_devices)}
        spec = {**row.spec, "resources": resources}
        conn.execute(sa.update(jobs).where(jobs.c.id == row.id).values(spec=spec))
        return replace(row, spec=spec)

    def has_waiting(self, kind: str = "plugin") -> bool:
        """Whether a due queued job of ``kind`` waits for a claim (one indexed read, no rows)."""
        with self._read() as conn:
            return conn.scalars(self._due(kind, utc_now()).limit(1)).first() is not None

    def admission_view(self, kind: str = "plugin") -> tuple[list[JobRow], list[JobRow]]:
        """``(holding, waiting)`` as :meth:`admit` sees them, read without a lock."""
        with self._read() as conn:
            return self._admission_rows(conn, kind, utc_now())

    def _admission_rows(
        self, conn: Connection, kind: str, now: datetime
    ) -> tuple[list[JobRow], list[JobRow]]:
        claimed = sa.and_(jobs.c.state == QUEUED, jobs.c.claimed_at.is_not(None))
        holding = sa.select(jobs).where(jobs.c.kind == kind, sa.or_(jobs.c.state == STARTED, claimed))
        waiting = sa.select(jobs).where(*self._due_where(kind, now)).order_by(jobs.c.id)
        return (
            [_row(r._mapping) for r in conn.execute(holding.order_by(jobs.c.id))],
            [_row(r._mapping) for r in conn.execute(waiting)],
        )

    @staticmethod
    def _due_where(kind: str, now: datetime) -> tuple[sa.ColumnElement[bool], ...]:
        """A queued job of ``kind`` that no process claimed and that is due (not pausing)."""
        return (
            jobs.c.kind == kind,
            jobs.c.state == QUEUED,
            jobs.c.claimed_at.is_(None),
            sa.or_(jobs.c.retry_at.is_(None), jobs.c.retry_at <= now),
        )

    def _due(self, kind: str, now: datetime) -> sa.Select[Any]:
        return sa.select(jobs.c.id).where(*self._due_where(kind, now)).order_by(jobs.c.id)

    def last_admitted(self, auids: Iterable[str], kind: str = "plugin") -> dict[str, datetime]:
        """When each of ``auids`` last had a job started (fair share's tie-break)."""
        names = sorted(set(auids))
        if not names:
            return {}
        query = (
            sa.select(jobs.c.auid, sa.func.max(jobs.c.started_at))
            .where(jobs.c.kind == kind, jobs.c.auid.in_(names), jobs.c.started_at.is_not(None))
            .group_by(jobs.c.auid)
        )
        with self._read() as conn:
            return {auid: _aware(when) for auid, when in conn.execute(query)}

    def run_times(self, image: str, cmd: str, last: int = 5, kind: str = "plugin") -> list[float]:
        """How long the newest ``last`` successful runs of ``image`` with ``cmd`` took, seconds
        (started to finished as recorded; the admission queue's run-time estimates)."""
        query = (
            sa.select(jobs.c.started_at, jobs.c.finished_at)
            .where(
                jobs.c.kind == kind,
                jobs.c.image == image,
                jobs.c.cmd == cmd,
                jobs.c.status == FINISHED_OK,
                jobs.c.started_at.is_not(None),
                jobs.c.finished_at.is_not(None),
            )
            .order_by(jobs.c.id.desc())
            .limit(last)
        )
        with self._read() as conn:
            return [
                max(0.0, (_aware(ended) - _aware(began)).total_seconds())
                for began, ended in conn.execute(query)
            ]

    def note_many(self, messages: Mapping[int, str]) -> None:
        """Messages of many queued jobs at once (why each waits); no events."""
        if not messages:
            return
        now = utc_now()
        update = (
            sa.update(jobs)
            .where(jobs.c.id == sa.bindparam("job_id"), jobs.c.state == QUEUED)
            .values(message=sa.bindparam("text"), updated_at=now)
        )
        with self._write() as conn:
            conn.execute(update, [{"job_id": job_id, "text": text} for job_id, text in messages.items()])

    def wait_for_engine(self, job_id: int, message: str, retry_at: datetime, waiting_since: datetime) -> bool:
        """Back to the queue until ``retry_at``, saying why; False if deleted meanwhile."""
        with self._write() as conn:
            done = conn.execute(
                sa.update(jobs)
                .where(jobs.c.id == job_id, jobs.c.state == QUEUED)
                .values(
                    message=message,
                    retry_at=retry_at,
                    waiting_since=waiting_since,
                    updated_at=utc_now(),
                    claimed_at=None,
                )
            ).rowcount
        if not done:
            self.unclaim(job_id)
        return bool(done)

    def unclaim(self, job_id: int) -> None:
        """Let go of a claim whatever the job's state (a start that ended without a change)."""
        with self._write() as conn:
            conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(claimed_at=None))

    def release_stale(self, lease: timedelta, is_dead: Callable[[str | None], bool] = owner_is_dead) -> int:
        """Claims of dead holders, or older than ``lease``, go back to the queue."""
        cutoff = utc_now() - lease
        with self._write() as conn:
            held = conn.execute(
                sa.select(jobs.c.id, jobs.c.owner, jobs.c.claimed_at).where(
                    jobs.c.state == QUEUED, jobs.c.claimed_at.is_not(None)
                )
            ).all()
            stale = [row.id for row in held if is_dead(row.owner) or _aware(row.claimed_at) < cutoff]
            if stale:
                conn.execute(sa.update(jobs).where(jobs.c.id.in_(stale)).values(claimed_at=None))
        return len(stale)

    def fail_interrupted(self, is_dead: Callable[[str | None], bool] = owner_is_dead) -> int:
        """Jobs whose staging process died before they were queued end with that reason."""
        with self._read() as conn:
            staging = conn.execute(sa.select(jobs.c.id, jobs.c.owner).where(jobs.c.state == ACCEPTED)).all()
        dead = [row.id for row in staging if is_dead(row.owner)]
        for job_id in dead:
            self.mark_finished(
                job_id, FINISHED_ERROR, "the service stopped while staging this job's input; submit it again"
            )
        return len(dead)

    # -- deleting ---------------------------------------------------------------------------
    def tombstone(self, jid: str, kind: str = "plugin") -> JobRow | None:
        """Mark the live row deleted before anything is removed; returns it as it was."""
        with self._write() as conn:
            return self._bury_live(conn, jid, kind, utc_now())

    def _bury_live(self, conn: Connection, jid: str, kind: str, now: datetime) -> JobRow | None:
        """The live row of ``jid`` and ``kind``, if any, put into the history (deleted)."""
        row = self._live(conn, jid, kind, lock=True)
        if row is None:
            return None
        conn.execute(
            sa.update(jobs)
            .where(jobs.c.id == row.id)
            .values(state=DELETED, deleted_at=now, updated_at=now, logs=None)
        )
        self._event(conn, row.id, DELETED, row.status, "deleted", now)
        return row

    def restore(self, row: JobRow, reason: str) -> None:
        """Undo a tombstone whose removal failed, so the job still answers (unless its jid was reused)."""
        now = utc_now()
        with self._write() as conn:
            if self._live(conn, row.jid, row.kind) is not None:
                return
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.id == row.id, jobs.c.state == DELETED)
                .values(state=row.state, deleted_at=None, updated_at=now, logs=row.logs)
            )
            self._event(conn, row.id, row.state, row.status, f"deletion failed: {reason}", now)

    def prune(self, before: datetime) -> int:
        """Drop deleted jobs (and their events) deleted before ``before``."""
        old = sa.select(jobs.c.id).where(jobs.c.state == DELETED, jobs.c.deleted_at < before)
        with self._write() as conn:
            conn.execute(sa.delete(job_events).where(job_events.c.job_id.in_(old)))
            pruned = conn.execute(sa.delete(jobs).where(jobs.c.id.in_(old.scalar_subquery()))).rowcount
            if self.sqlite:
                conn.exec_driver_sql("PRAGMA optimize")  # keeps the planner's statistics fresh
        return pruned

    # -- reading ----------------------------------------------------------------------------
    def live(self, jid: str, kind: str = "plugin") -> JobRow | None:
        """The job a client means by ``jid``: its row that is not deleted."""
        with self._read() as conn:
            return self._live(conn, jid, kind)

    def get(self, job_id: int) -> JobRow | None:
        with self._read() as conn:
            return self._get(conn, job_id)

    def latest(self, jid: str, kind: str | None = None) -> JobRow | None:
        """The newest row of ``jid``, deleted or not (the history of one jid)."""
        query = sa.select(jobs).where(jobs.c.jid == jid).order_by(jobs.c.id.desc()).limit(1)
        if kind is not None:
            query = query.where(jobs.c.kind == kind)
        with self._read() as conn:
            found = conn.execute(query).first()
        return _row(found._mapping) if found else None

    def events(self, job_id: int) -> list[Event]:
        query = sa.select(job_events).where(job_events.c.job_id == job_id).order_by(job_events.c.id)
        with self._read() as conn:
            return [
                Event(r.id, r.job_id, r.state, r.status, r.message, _aware(r.at)) for r in conn.execute(query)
            ]

    def queued(self, kind: str = "plugin", limit: int = 1000) -> list[JobRow]:
        """Jobs waiting to start, in queue order (with their resources)."""
        query = (
            sa.select(jobs)
            .where(jobs.c.state == QUEUED, jobs.c.kind == kind)
            .order_by(jobs.c.id)
            .limit(limit)
        )
        with self._read() as conn:
            return [_row(r._mapping) for r in conn.execute(query)]

    def running(self, kind: str = "plugin") -> list[JobRow]:
        """Jobs handed to the engine and not known to have finished."""
        query = sa.select(jobs).where(jobs.c.state == STARTED, jobs.c.kind == kind).order_by(jobs.c.id)
        with self._read() as conn:
            return [_row(r._mapping) for r in conn.execute(query)]

    def counts(self, include_deleted: bool = False) -> dict[str, int]:
        """Jobs by client status (live rows only unless ``include_deleted``)."""
        query = sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status)
        if not include_deleted:
            query = query.where(jobs.c.state != DELETED)
        with self._read() as conn:
            return {status: count for status, count in conn.execute(query)}

    def history(self, query: HistoryQuery) -> HistoryPage:
        """One page of jobs, newest first; ``next_cursor`` is None on the last page."""
        limit = max(1, min(query.limit, MAX_PAGE))
        select = sa.select(*_LISTED).where(*self._filters(query)).order_by(jobs.c.id.desc()).limit(limit + 1)
        with self._read() as conn:
            rows = [_row(r._mapping) for r in conn.execute(select)]
        more = len(rows) > limit
        rows = rows[:limit]
        return HistoryPage(rows, encode_cursor(rows[-1].id) if more else None)

    @staticmethod
    def _filters(query: HistoryQuery) -> list[sa.ColumnElement[bool]]:
        conditions: list[sa.ColumnElement[bool]] = []
        for column, value in (
            (jobs.c.status, query.status),
            (jobs.c.state, query.state),
            (jobs.c.auid, query.auid),
            (jobs.c.image, query.image),
            (jobs.c.jid, query.jid),
            (jobs.c.kind, query.kind),
        ):
            if value is not None:
                conditions.append(column == value)
        if query.since is not None:
            conditions.append(jobs.c.accepted_at >= query.since)
        if query.until is not None:
            conditions.append(jobs.c.accepted_at < query.until)
        if query.cursor is not None:
            conditions.append(jobs.c.id < decode_cursor(query.cursor))
        if query.search:
            text = query.search
            found = (c.contains(text, autoescape=True) for c in (jobs.c.jid, jobs.c.image, jobs.c.auid))
            conditions.append(sa.or_(*found))
        return conditions

    def counts_by_api(self) -> dict[tuple[str, str], int]:
        """Live jobs by (API generation, client status), for the metrics."""
        query = (
            sa.select(jobs.c.api, jobs.c.status, sa.func.count())
            .where(jobs.c.state != DELETED)
            .group_by(jobs.c.api, jobs.c.status)
        )
        with self._read() as conn:
            return {(api, status): count for api, status, count in conn.execute(query)}

    def timeline(self, since: datetime, until: datetime, limit: int, kind: str = "plugin") -> list[JobRow]:
        """Jobs whose life (acceptance to finish or deletion) overlaps [since, until), oldest
        first; the newest ``limit`` of them."""
        ended = sa.func.coalesce(jobs.c.finished_at, jobs.c.deleted_at)
        query = (
            sa.select(*_LISTED)
            .where(jobs.c.kind == kind, jobs.c.accepted_at < until, sa.or_(ended.is_(None), ended >= since))
            .order_by(jobs.c.id.desc())
            .limit(limit)
        )
        with self._read() as conn:
            return [_row(r._mapping) for r in conn.execute(query)][::-1]

    # -- import -----------------------------------------------------------------------------
    def import_row(self, values: Mapping[str, Any], events: Iterable[tuple[str, str, str, datetime]]) -> bool:
        """Insert a row recorded by an older pfcon, unless its jid already has one."""
        with self._write() as conn:
            if self._live(conn, values["jid"], values.get("kind", "plugin")) is not None:
                return False
            job_id = conn.execute(sa.insert(jobs).values(**values)).inserted_primary_key[0]
            for state, status, message, at in events:
                self._event(conn, job_id, state, status, message, at)
        return True

    # -- helpers ----------------------------------------------------------------------------
    def _get(self, conn: Connection, job_id: int) -> JobRow | None:
        found = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
        return _row(found._mapping) if found else None

    def _live(self, conn: Connection, jid: str, kind: str, lock: bool = False) -> JobRow | None:
        query = _LIVE_FOR_UPDATE if lock and not self.sqlite else _LIVE
        found = conn.execute(query, {"jid": jid, "kind": kind}).first()
        return _row(found._mapping) if found else None

    def _change(
        self, job_id: int, from_states: tuple[str, ...], state: str, status: str, message: str, **values: Any
    ) -> bool:
        """Move a job to ``state`` if it is in one of ``from_states``, with its event."""
        owner = values.pop("owner", None)
        now = utc_now()
        values.update(state=state, status=status, message=message, updated_at=now)
        update, in_one = _change_statements(from_states, owner is not None, tuple(sorted(values)))
        bound = {"w_id": job_id, "w_owner": owner, **{f"v_{name}": value for name, value in values.items()}}
        if not self.sqlite:  # one statement, its own transaction: see _accept_bound
            event = _event_values(state, status, message, now)
            with self._read() as conn:
                return conn.execute(in_one, {**bound, **event}).first() is not None
        with self._write() as conn:
            done = conn.execute(update, bound).rowcount
            if done:
                self._event(conn, job_id, state, status, message, now)
        return bool(done)

    @staticmethod
    def _event(conn: Connection, job_id: int, state: str, status: str, message: str, at: datetime) -> None:
        conn.execute(_INSERT_EVENT, {"e_job_id": job_id, **_event_values(state, status, message, at)})


@functools.cache
def _change_statements(
    from_states: tuple[str, ...], by_owner: bool, columns: tuple[str, ...]
) -> tuple[sa.Update, sa.ReturningInsert[tuple[int]]]:
    """The ``UPDATE`` of one kind of state change, and on PostgreSQL the same with its event
    in one statement; built once per kind (a handful) and run with bound values."""
    where = [jobs.c.id == sa.bindparam("w_id"), jobs.c.state.in_(from_states)]
    if by_owner:
        where.append(jobs.c.owner == sa.bindparam("w_owner"))
    update = sa.update(jobs).where(*where).values(_bound(columns))
    changed = update.returning(jobs.c.id).cte("changed")
    # the event's id says whether the row changed: an INSERT's rowcount is lost with its cursor
    return update, _event_of(changed.c.id).returning(job_events.c.id)
