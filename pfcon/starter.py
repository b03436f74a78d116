"""Starts queued jobs on the engine off the request path, exactly once, from one scheduler.

A submission answers 201 once its data is staged and the job is queued in the store; each
worker process has one scheduler thread that claims due queued jobs from the store and hands
them to a small pool that creates and starts the containers. A claim is given to one process
alone (across gunicorn workers and replicas), so every start happens once; a job queued by a
service that stopped is simply still queued when the next one boots.

An engine that does not answer is not the job's fault: its start goes back to the queue with
a time to retry (a growing pause) and a message saying why, and only after ``retry_seconds``
does the job fail. The waits live in the store, not in threads: 500 jobs waiting for an
engine cost 500 rows, and the same one scheduler thread per process. The same thread hands
back the claims of processes that died and prunes history past ``PFCON_HISTORY_DAYS``.

For engines that start every job at once (docker, podman) an admission queue
(:mod:`pfcon.admission`) picks the jobs instead of "the oldest". The process's engine status
feed (:mod:`pfcon.compute.feed`) records each end it sees and wakes the scheduler at that
moment, so a finished or failed job's capacity is handed on at once: one event stream per
process serves both the status polls and the queue. The ends the feed cannot record (a job
that left the engine behind pfcon's back, one that ended while its start was being
recorded, any end while the stream is down) are read from the engine by ``settle``: at once
when the feed says a job left the engine, else at most every :data:`SETTLE_SECONDS`. A pass
that finds nothing waiting costs one short store read: 40 jobs submitted at once made 150
passes, each of which listed the engine's containers and read every running job's row twice.
A pass woken only because the feed recorded an end skips even that read when the last look
found nothing waiting (a freed share matters only to a waiting job); a submit, any other
wake and the pass of every :data:`POLL_SECONDS` look at the store.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from pfcon.admission.queue import AdmissionQueue
from pfcon.background import TrackedPool, join
from pfcon.compute.base import ComputeBackend, JobSpec
from pfcon.errors import BackendUnavailable, JobExists, PfconError
from pfcon.observability.observer import Observer
from pfcon.store import JobRow, JobStore
from pfcon.store.repository import CLAIM_LEASE, DELETED, FINISHED, FINISHED_ERROR, process_owner, utc_now

log = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_PAUSE_SECONDS = 30.0
POLL_SECONDS = 1.0
SETTLE_SECONDS = 1.0  # how often the ends the feed did not record are read from the engine
STALE_CHECK_SECONDS = 10.0  # claims of a process that died go back to the queue this soon
PRUNE_SECONDS = 3600.0


class JobStarter:
    def __init__(
        self,
        backend: ComputeBackend,
        store: JobStore,
        workers: int,
        retry_seconds: float = 600,
        history_days: int = 30,
        poll_seconds: float = POLL_SECONDS,
        observer: Observer | None = None,
        admission: AdmissionQueue | None = None,
        settle: Callable[[], object] | None = None,
    ) -> None:
        self.backend = backend
        self.observer = observer or Observer("")
        self.store = store
        self.workers = workers
        self.retry_seconds = retry_seconds
        self.history = timedelta(days=history_days)
        self.poll_seconds = poll_seconds
        self.owner = process_owner()
        self.admission = admission
        self.settle = settle
        self._pool = TrackedPool(workers, "pfcon-start")
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._paused = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._next_stale_check = 0.0
        self._next_prune = 0.0
        self._next_settle = 0.0
        #: whether the next pass asks the store for a waiting job (see ``freed``)
        self._look = True
        #: held for the whole of one scheduler pass (see ``pause``)
        self._passing = threading.Lock()

    # -- control --------------------------------------------------------------------------
    def resume(self) -> None:
        """Run the scheduler (started once per process; jobs already queued are picked up)."""
        with self._lock:
            self._paused = False
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._loop, name="pfcon-scheduler", daemon=True)
                self._thread.start()
        self.wake()

    def pause(self) -> None:
        """Stop claiming jobs (starts in progress finish); ``resume`` goes on.

        Returns once a pass already under way has ended, so that nothing the scheduler
        reads or records (claims, the ends ``settle`` records) happens after it."""
        with self._lock:
            self._paused = True
        with self._passing:
            pass

    def wake(self) -> None:
        """A job was queued, a start ended or a job's share was freed: look at the queue now
        rather than at the next poll."""
        with self._lock:
            self._look = True
        self._wake.set()

    def freed(self, recorded: bool) -> None:
        """The feed saw a started job end (``recorded``: it recorded the end) or leave the
        engine (not recorded: the next pass reads the ends from the engine at once).

        A recorded end frees a share that only a waiting job can use: the pass it wakes asks
        the store only if the last look found a job waiting (each of 40 ends asked it, and
        found none). A job queued meanwhile by another process is found by the pass of every
        ``poll_seconds``, as any job that process queues and cannot start."""
        if recorded:
            self._wake.set()
            return
        with self._lock:
            self._next_settle = 0.0
        self.wake()

    def attempt(self, jid: str) -> bool:
        """Claim and start ``jid`` now, in this thread; False if it was not queued or is taken."""
        row = self.store.live(jid)
        claimed = self.store.claim_job(row.id, self.owner) if row is not None else None
        if claimed is None:
            return False
        self._start(claimed)
        return True

    def shutdown(self) -> None:
        """Claim nothing more; wait (bounded) for the scheduler and the starts in flight.

        A start that meets a silent engine goes back to the queue, not to a retry."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake.set()
        join(thread)
        self._pool.close()

    # -- the scheduler --------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            woken = self._wake.wait(self.poll_seconds)
            self._wake.clear()
            with self._lock:
                if self._closed:
                    return
                if not woken:
                    self._look = True  # the periodic look: jobs other processes queued
            try:
                with self._passing:
                    if not self._paused:
                        self._dispatch()
            except PfconError as error:  # the store does not answer: try again at the next poll
                log.warning("scheduler: %s", error.message)
            except Exception:
                log.exception("scheduler: unexpected error")

    def _dispatch(self) -> None:
        now = time.monotonic()
        if now >= self._next_stale_check:
            self._next_stale_check = now + STALE_CHECK_SECONDS
            self.store.release_stale(CLAIM_LEASE)
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_SECONDS
            self._prune()
        for row in self._claim():
            with self._lock:
                if not self._closed:
                    self._in_flight += 1
                    self._pool.submit(self._run, row)
                    continue
            self.store.unclaim(row.id)  # shutting down: another process (or the next boot) starts it

    def _claim(self) -> list[JobRow]:
        """The jobs this pass starts: the oldest queued, or the admission queue's pick."""
        if self.admission is None:
            with self._lock:
                free = self.workers - self._in_flight
            return self.store.claim(self.owner, free)
        self._settle()
        with self._lock:
            look, self._look = self._look, False
        if not look or not self.store.has_waiting():
            return []
        with self._lock:
            self._look = True  # jobs wait: every freed share is worth a look
        rows, never = self.admission.pick(self.owner)
        for row in rows:
            if row.id in never:
                log.warning("[%s] can never start: %s", row.jid, never[row.id])
                self._fail(row, f"failed to start: {never[row.id]}")
        return [row for row in rows if row.id not in never]

    def _settle(self) -> None:
        """Read the ends the feed did not record: at once when asked (``freed``), else at
        most every ``SETTLE_SECONDS``."""
        if self.settle is None:
            return
        now = time.monotonic()
        with self._lock:
            due = now >= self._next_settle
            if due:
                self._next_settle = now + SETTLE_SECONDS
        if not due:
            return
        try:
            self.settle()
        except PfconError as error:  # the engine does not answer: decide on what the store knows
            log.warning("scheduler: could not read the jobs' ends: %s", error.message)

    def _prune(self) -> None:
        pruned = self.store.prune(utc_now() - self.history)
        if pruned:
            log.info("pruned %d deleted jobs older than %s", pruned, self.history)

    def _run(self, row: JobRow) -> None:
        started = False
        try:
            started = self._start(row)
        except Exception:
            log.exception("[%s] unexpected error in the starter", row.jid)
        finally:
            with self._lock:
                self._in_flight -= 1
            if self.admission is None or not started:
                self.wake()  # a start slot is free, or the job's share of the queue's capacity

    # -- one start --------------------------------------------------------------------------
    def _start(self, row: JobRow) -> bool:
        """Create and start the job's container; True once it is recorded as started."""
        jid = row.jid
        try:
            spec = JobSpec.from_dict(row.spec or {})
            engine_id = self.backend.submit(spec).engine_id
        except BackendUnavailable as exc:
            self._engine_silent(row, exc.message)
            return False
        except JobExists:
            if not self._created_before(jid):
                self._fail(row, "failed to start: a container of that name is not pfcon's")
                return False
            engine_id = None  # started by an earlier attempt: its recorded id, if any, stays
        except PfconError as exc:
            log.warning("[%s] failed to start: %s", jid, exc.message)
            self._fail(row, f"failed to start: {exc.message}")
            return False
        except Exception:
            log.exception("[%s] unexpected error while starting", jid)
            self._fail(row, "failed to start: unexpected error, see pfcon's log")
            return False
        if self.store.mark_started(row.id, owner=self.owner, engine_id=engine_id):
            self.observer.started(row)
            log.info("[%s] started", jid)
            return True
        self.store.unclaim(row.id)
        now = self.store.get(row.id)
        if now is None or now.state in (DELETED, FINISHED):  # deleted, or cancelled by a delete job
            log.info("[%s] deleted or cancelled while starting; removing its container", jid)
            with contextlib.suppress(PfconError):
                self.backend.remove(jid)
        return False

    def _fail(self, row: JobRow, message: str) -> None:
        if self.store.mark_finished(row.id, FINISHED_ERROR, message, owner=self.owner):
            self.observer.start_failed(row)
        else:
            self.store.unclaim(row.id)

    def _engine_silent(self, row: JobRow, reason: str) -> None:
        """Back to the queue with a growing pause, or fail once the engine was silent too long."""
        now = utc_now()
        since = row.waiting_since or now
        waited = (now - since).total_seconds()
        with self._lock:
            closed = self._closed
        if closed:
            self.store.unclaim(row.id)  # the next service to boot starts it
            return
        if waited >= self.retry_seconds:
            log.warning("[%s] giving up after %.0f s without an engine: %s", row.jid, waited, reason)
            self._fail(row, f"failed to start: the engine did not answer for {waited:.0f} s ({reason})")
            return
        pause = min(MAX_RETRY_PAUSE_SECONDS, max(FIRST_RETRY_SECONDS, waited))
        log.warning("[%s] engine unavailable, retrying in %.0f s: %s", row.jid, pause, reason)
        self.store.wait_for_engine(
            row.id, f"waiting for the engine to answer: {reason}", now + timedelta(seconds=pause), since
        )

    def _created_before(self, jid: str) -> bool:
        """A 409 on start: our own container from before a restart counts as started."""
        try:
            self.backend.info(jid)
        except PfconError:
            return False
        log.info("[%s] its container already existed (service restarted mid-start)", jid)
        return True
