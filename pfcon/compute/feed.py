"""Running jobs' state flows in from the engine, so a status poll costs no engine call.

A ChRIS backend polls every live job every few seconds; asking the engine each time made
the status of a running job cost an inspect and a logs call per poll. Instead one *feed*
per process follows the engine and keeps what it last said of each live job:

* :class:`EventFeed` for engines with an event stream (Docker, Podman, Kubernetes): it reads the
  stream in short windows (``since``/``until``), so a hung connection is noticed within a
  window, and on every (re)connection first reads every live job once, so nothing that
  happened while it was away is missed (and again every :data:`RESYNC_SECONDS`, so an event
  the engine lost cannot leave a state stale for longer);
* :class:`PollFeed` for the others (Swarm, Slurm, Cromwell): one
  :meth:`~pfcon.compute.base.ComputeBackend.poll_all` for all live jobs every second.

A job the feed sees end is recorded in the store at once (status, exit code, final log
tail), so every process answers it from there; the feed then calls ``freed`` (the admission
queue's scheduler wakes and hands the job's share on), as it does when a job leaves the
engine behind pfcon's back. The feed is the process's only engine event stream.

The feed is trusted only while it has confirmed recently (:data:`FRESH_SECONDS`): a dropped
stream or a failed poll makes :meth:`StateFeed.current` answer ``None`` and the request asks
the engine itself, as before — slower, never stale. Log tails of running jobs are read at
most once a second per job (:class:`LogTails`), however often clients poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from pfcon.background import join
from pfcon.compute.base import ComputeBackend, EngineEvent, JobInfo, JobStatus
from pfcon.errors import BackendUnavailable, JobNotFound, PfconError
from pfcon.store import JobRow, JobStore
from pfcon.store.model import owner_is_dead, process_owner
from pfcon.store.repository import QUEUED, STARTED

log = logging.getLogger(__name__)

#: a feed that has not confirmed the engine's state for this long is not trusted
FRESH_SECONDS = 3.0
#: length of one event-stream window (a hung stream is noticed after at most this)
WINDOW_SECONDS = 1.0
#: pause between two polls of a polling feed
POLL_SECONDS = 1.0
#: an event feed reads every live job again this often: what an event the engine never sent
#: (or a passing state no later event corrects) would leave stale is right again after this
RESYNC_SECONDS = 30.0
#: pause before a feed reconnects after a fault
RETRY_SECONDS = 1.0
#: a running job's log tail is read from the engine at most this often
LOG_REFRESH_SECONDS = 1.0
RECORDED = frozenset({JobStatus.finishedSuccessfully, JobStatus.finishedWithError})
#: told of each job the feed records as ended: its row as it was, and the status recorded
Finished = Callable[[JobRow, str], None]
#: told when a job the store holds as started ended or left the engine (its share is free):
#: True when the feed recorded its end, False when it could not (the job left the engine)
Freed = Callable[[bool], None]
NEVER = float("-inf")
#: the event of a container's start: it says all a running job's status needs (no inspect)
START = "start"
#: the events of a container's end: only the feed that records the end inspects the job
ENDS = frozenset({"die", "cleanup"})


@dataclass
class _Tail:
    lock: threading.Lock = field(default_factory=threading.Lock)
    text: str = ""
    read_at: float = NEVER


class LogTails:
    """The last ``tail`` lines of each running job, read at most every ``refresh`` seconds.

    Concurrent polls of one job wait for the one read in flight and share its answer; a
    failed read is not kept, so the next poll tries again.
    """

    def __init__(
        self,
        read: Callable[[str, int], str],
        tail: int,
        refresh: float = LOG_REFRESH_SECONDS,
        max_jobs: int = 10_000,
    ) -> None:
        self.read = read
        self.tail = tail
        self.refresh = refresh
        self.max_jobs = max_jobs
        self._tails: OrderedDict[str, _Tail] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, jid: str) -> str:
        if self.tail <= 0:
            return ""
        entry = self._entry(jid)
        with entry.lock:
            if time.monotonic() - entry.read_at >= self.refresh:
                entry.text = self.read(jid, self.tail)
                entry.read_at = time.monotonic()
            return entry.text

    def forget(self, jid: str) -> None:
        with self._lock:
            self._tails.pop(jid, None)

    def _entry(self, jid: str) -> _Tail:
        with self._lock:
            entry = self._tails.get(jid)
            if entry is None:
                entry = self._tails[jid] = _Tail()
                while len(self._tails) > self.max_jobs:
                    self._tails.popitem(last=False)
            else:
                self._tails.move_to_end(jid)
            return entry


class StateFeed:
    """What the engine last said of each live job, and whether that can be trusted now."""

    kind = "abstract"

    def __init__(
        self,
        backend: ComputeBackend,
        store: JobStore,
        log_tail: int,
        on_finished: Finished | None = None,
        fresh_seconds: float = FRESH_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
        freed: Freed | None = None,
    ) -> None:
        self.backend = backend
        self.store = store
        self.log_tail = log_tail
        self.on_finished = on_finished or (lambda row, status: None)
        self.freed = freed or (lambda recorded: None)
        self.fresh_seconds = fresh_seconds
        self.retry_seconds = retry_seconds
        self._seen: dict[str, JobInfo] = {}
        self._confirmed = NEVER
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- control --------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._loop, name=f"pfcon-{self.kind}", daemon=True)
                self._thread.start()

    def close(self) -> None:
        self._stop.set()
        join(self._thread, timeout=WINDOW_SECONDS + 10)

    # -- reading --------------------------------------------------------------------------
    def current(self, jid: str) -> JobInfo | None:
        """The job's state as the feed knows it, or ``None``: ask the engine (not seen, or the
        feed has not confirmed within ``fresh_seconds``)."""
        with self._lock:
            if time.monotonic() - self._confirmed > self.fresh_seconds:
                return None
            return self._seen.get(jid)

    @property
    def healthy(self) -> bool:
        with self._lock:
            return time.monotonic() - self._confirmed <= self.fresh_seconds

    def forget(self, jid: str) -> None:
        """The job was deleted (its jid may be reused): drop what was seen of it."""
        with self._lock:
            self._seen.pop(jid, None)

    # -- the loop -------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except PfconError as error:
                log.warning("%s: %s; status polls ask the engine until it is back", self.kind, error.message)
            except Exception:
                log.exception("%s: unexpected error; status polls ask the engine until it is back", self.kind)
            self._distrust()
            self._stop.wait(self.retry_seconds)

    def _follow(self) -> None:
        """Keep the state current until the engine fails or the feed is closed."""
        raise NotImplementedError

    # -- shared steps ---------------------------------------------------------------------
    def _confirm(self, since: float) -> None:
        """Everything the engine did up to ``since`` (monotonic) has been taken in."""
        with self._lock:
            self._confirmed = max(self._confirmed, since)

    def _distrust(self) -> None:
        with self._lock:
            self._confirmed = NEVER

    def _live_jids(self) -> list[str]:
        return [row.jid for row in self.store.running()]

    def _replace(self, infos: Mapping[str, JobInfo]) -> None:
        """A full picture of the live jobs (after a (re)connection or a poll)."""
        with self._lock:
            self._seen = {jid: info for jid, info in infos.items() if _vouched(info)}
        self._record_ended(infos.values())

    def _note(self, info: JobInfo, row: JobRow) -> None:
        """What an event's inspect said of the job whose live ``row`` was just read."""
        if not _vouched(info):
            self.forget(info.jid)
            return
        with self._lock:
            self._seen[info.jid] = info
        self._record_ended((info,), {info.jid: row})

    def _record_ended(self, infos: Iterable[JobInfo], rows: Mapping[str, JobRow] | None = None) -> None:
        """Record a job that ended in the store, with its final log tail, once (``rows``: the
        jobs' live rows if just read; one read before its start was recorded is read again)."""
        for info in infos:
            if info.status not in RECORDED:
                continue
            row = (rows or {}).get(info.jid)
            if row is None or row.state != STARTED:
                row = self.store.live(info.jid)
            if row is None or row.state != STARTED:
                continue  # not yet recorded as started: its first status poll records it
            if not same_run(info, row):
                continue  # the end of an earlier run's container (a failed job run again)
            if not records_end_of(row):
                continue  # another live process started it: its feed records the end
            try:
                logs = self.backend.logs(info.jid, self.log_tail)
            except JobNotFound:
                logs = ""
            if self.store.mark_finished(
                row.id, info.status.value, info.message, info.exit_code, logs, info.timestamp or None
            ):
                self.on_finished(row, info.status.value)
                self.freed(True)


class EventFeed(StateFeed):
    """Follows the engine's event stream (Docker and Podman events, Kubernetes watches)."""

    kind = "event-feed"

    def __init__(self, *args: object, window_seconds: float = WINDOW_SECONDS, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.window_seconds = window_seconds

    def _follow(self) -> None:
        since = time.time()
        resynced_at = time.monotonic()
        self._replace(self.backend.poll_all(self._live_jids()))  # what happened while away
        self._confirm(resynced_at)
        while not self._stop.is_set():
            if time.monotonic() - resynced_at >= RESYNC_SECONDS:
                resynced_at = time.monotonic()
                self._replace(self.backend.poll_all(self._live_jids()))
            until = time.time() + self.window_seconds
            opened = time.monotonic()
            for event in self.backend.events(since, until):
                self._changed(event)
            if time.time() < until - 0.05:
                raise StreamEnded(f"the {self.backend.name} engine's event stream ended early")
            self._confirm(opened)
            since = until

    def _changed(self, event: EngineEvent) -> None:
        """An event of a container of ours: what the event says, or its state read once
        (this feed's call, not a client's).

        Every worker's feed sees every event. A start is taken from the event itself (its
        time is the event's, not the engine's ``StartedAt``, a moment earlier); an end is
        inspected only by the feed that records it (:func:`records_end_of`): the others stop
        vouching for the job at once, and their status polls read its record, or, until the
        recording feed has written it, ask the engine themselves.
        """
        jid = event.jid
        row = self.store.live(jid)
        if row is None or row.state not in (QUEUED, STARTED):
            # another service's job on a shared engine, or one already recorded or deleted
            # (by another process): nothing to vouch for, so status polls read its record
            self.forget(jid)
            return
        if event.action == START:
            self._note(started_info(event, row), row)
            return
        if event.action in ENDS and row.state == STARTED and not records_end_of(row):
            self.forget(jid)
            return
        try:
            self._note(self.backend.info(jid), row)
        except JobNotFound:
            self.forget(jid)  # removed behind pfcon's back: a status poll asks the engine
            if row.state == STARTED:
                self.freed(False)  # the admission queue records it vanished and hands its share on


class PollFeed(StateFeed):
    """Asks the engine for all live jobs at once, every ``poll_seconds``."""

    kind = "poll-feed"

    def __init__(self, *args: object, poll_seconds: float = POLL_SECONDS, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.poll_seconds = poll_seconds

    def _follow(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self._replace(self.backend.poll_all(self._live_jids()))
            self._confirm(started)
            self._stop.wait(max(0.0, self.poll_seconds - (time.monotonic() - started)))


def records_end_of(row: JobRow) -> bool:
    """Whether this process's feed records the end of ``row``: it started the job, or the
    process that did is gone (or unknown).

    Every process's feed sees every end; when each of them read the final log tail and tried
    the write, the engine served one logs call and the store one refused write per process
    for nothing. Should the starting process miss the end (its feed down, or a replica on
    another host that stopped), the scheduler's ``settle`` or the first status poll records
    it, as for an end no feed saw.
    """
    return row.owner is None or row.owner == process_owner() or owner_is_dead(row.owner)


def started_info(event: EngineEvent, row: JobRow) -> JobInfo:
    """What an inspect of a container just started says of its job, from its start event."""
    return JobInfo(
        row.jid, row.image, row.cmd, JobStatus.started, "running", event.at, engine_id=event.engine_id
    )


def same_run(info: JobInfo, row: JobRow) -> bool:
    """Whether what the engine said is of this run of the job: a failed plugin job run again
    under its jid gets a new container, and the old one's state must not answer for it."""
    return info.engine_id is None or row.engine_id is None or info.engine_id == row.engine_id


def _vouched(info: JobInfo) -> bool:
    """A passing engine state (Docker's 'removing', Podman's exit before it is final) is not
    vouched for: a status poll asks the engine until the state is final."""
    return info.status is not JobStatus.undefined and not info.passing


class StreamEnded(BackendUnavailable):
    """The event stream closed before the end of its window (engine restart, dropped connection)."""


def build_feed(
    backend: ComputeBackend,
    store: JobStore,
    log_tail: int,
    on_finished: Finished | None = None,
    freed: Freed | None = None,
) -> StateFeed:
    """The feed for this engine, chosen once at start-up; ``on_finished`` hears of each job
    it records as ended (the metrics), ``freed`` of each share a job gave back (the queue)."""
    feed = EventFeed if backend.event_stream else PollFeed
    return feed(backend, store, log_tail, on_finished, freed=freed)
