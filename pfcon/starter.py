"""Starts accepted jobs on the engine off the request path, exactly once.

Creating and starting a container takes the engine a few hundred milliseconds; a submission
answers 201 as soon as the data is staged and the job is recorded (with its JobSpec), and a
small pool of threads starts it. A start that fails is recorded, so the job reads
``finishedWithError`` with the engine's reason instead of staying ``notStarted``. Each
worker process also resumes, when it boots, jobs left accepted by a service that stopped;
a per-job file lock and the recorded state make every start happen once.

An engine that does not answer is not the job's fault: the start is retried with a growing
pause until the engine is back, and only after ``retry_seconds`` does the job fail, saying
why. Meanwhile the job reads ``notStarted`` with a message that it waits for the engine.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from pfcon.compute.base import ComputeBackend, JobSpec
from pfcon.errors import BackendUnavailable, JobExists, PfconError
from pfcon.records import ACCEPTED, FAILED, SUBMITTED, JobRecords

log = logging.getLogger(__name__)


FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_PAUSE_SECONDS = 30.0


class JobStarter:
    def __init__(
        self, backend: ComputeBackend, records: JobRecords, workers: int, retry_seconds: float = 600
    ) -> None:
        self.backend = backend
        self.records = records
        self.retry_seconds = retry_seconds
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pfcon-start")
        self._waiting: dict[str, float] = {}  # jid -> when its start first met a silent engine
        self._timers: dict[str, threading.Timer] = {}
        self._lock = threading.Lock()
        self._closed = False

    def start(self, jid: str) -> Future[None]:
        return self._pool.submit(self._start_once, jid)

    def resume(self) -> Future[None]:
        """Queue the start of every job still recorded as accepted."""
        return self._pool.submit(lambda: [self.start(jid) for jid in self.records.accepted()])

    def _start_once(self, jid: str) -> None:
        with self.records.start_lock(jid) as mine:
            record = self.records.load(jid) if mine else None
            if record is None or record.state != ACCEPTED or record.spec is None:
                return  # deleted, being started elsewhere, or already started
            self._start(JobSpec.from_dict(record.spec))

    def _start(self, spec: JobSpec) -> None:
        jid = spec.jid
        try:
            self.backend.submit(spec)
        except BackendUnavailable as exc:
            self._retry_later(jid, exc.message)
            return
        except JobExists:
            if not self._created_before(jid):
                self.records.update(jid, FAILED, "failed to start: a container of that name is not pfcon's")
                return
        except PfconError as exc:
            log.warning("[%s] failed to start: %s", jid, exc.message)
            self.records.update(jid, FAILED, f"failed to start: {exc.message}")
            return
        except Exception:
            log.exception("[%s] unexpected error while starting", jid)
            self.records.update(jid, FAILED, "failed to start: unexpected error, see pfcon's log")
            return
        if self.records.load(jid) is None:  # deleted while the engine was creating it
            log.info("[%s] deleted while starting; removing its container", jid)
            with contextlib.suppress(PfconError):
                self.backend.remove(jid)
            return
        self.records.update(jid, SUBMITTED)
        with self._lock:
            self._waiting.pop(jid, None)
        log.info("[%s] started", jid)

    def _retry_later(self, jid: str, reason: str) -> None:
        """Try again after a growing pause, or give up once the engine was silent too long."""
        now = time.monotonic()
        with self._lock:
            first = self._waiting.setdefault(jid, now)
            waited = now - first
            if waited >= self.retry_seconds or self._closed:
                self._waiting.pop(jid, None)
            else:
                pause = min(MAX_RETRY_PAUSE_SECONDS, max(FIRST_RETRY_SECONDS, waited))
                timer = threading.Timer(pause, self._retry_now, args=(jid,))
                timer.daemon = True
                self._timers[jid] = timer
                timer.start()
                self.records.update(jid, ACCEPTED, f"waiting for the engine to answer: {reason}")
                log.warning("[%s] engine unavailable, retrying in %.0f s: %s", jid, pause, reason)
                return
        if self._closed:
            return  # the next service to boot resumes it
        log.warning("[%s] giving up after %.0f s without an engine: %s", jid, waited, reason)
        self.records.update(
            jid, FAILED, f"failed to start: the engine did not answer for {waited:.0f} s ({reason})"
        )

    def _retry_now(self, jid: str) -> None:
        with self._lock:
            self._timers.pop(jid, None)
            if self._closed:
                return
        self.start(jid)

    def _created_before(self, jid: str) -> bool:
        """A 409 on start: our own container from before a restart counts as started."""
        try:
            self.backend.info(jid)
        except PfconError:
            return False
        log.info("[%s] its container already existed (service restarted mid-start)", jid)
        return True

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
        self._pool.shutdown(wait=True)
