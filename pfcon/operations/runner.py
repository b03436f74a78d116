"""Runs copy, upload and delete operations in pfcon on a bounded pool of threads.

pfcon 6 starts a container for each operation (0.3-0.5 s of engine work before a byte
moves); here an operation is a function over the storage strategy's streaming code, run by
one of ``PFCON_OP_WORKERS`` threads. The operations of one job run one at a time (a
``run_lock`` shared by every worker process), so a delete waits for a copy in flight.

Every step is recorded: ``started`` with its time, a progress line each second while it
runs (``copying: 12000 files, 1.2 GiB so far``), and the end with a summary or the reason
it failed. An operation whose process died (a restart, a killed worker) is claimed by the
next service to boot and redone from the start; every operation is written to be redone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace

from pfcon.background import TrackedPool, join
from pfcon.compute.base import JobStatus
from pfcon.errors import PfconError
from pfcon.observability import metrics
from pfcon.observability.observer import PFCON6
from pfcon.operations.records import Operation, OperationStore, now_text, owner_alive, this_process
from pfcon.storage.base import Progress

log = logging.getLogger(__name__)

VERBS = {"copy": "copying", "upload": "uploading", "delete": "deleting"}
Work = Callable[[Operation, Progress], str]


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"  # pragma: no cover - the loop returns first


def progress_line(kind: str, progress: Progress) -> str:
    return f"{VERBS[kind]}: {progress.files} files, {human_bytes(progress.bytes)} so far"


class OperationRunner:
    def __init__(self, store: OperationStore, work: Work, workers: int, report_seconds: float = 1.0) -> None:
        self.store = store
        self.work = work
        self.report_seconds = report_seconds
        self.me = this_process()
        self._pool = TrackedPool(workers, "pfcon-op")
        self._running: dict[tuple[str, str, int], Progress] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._reporter = threading.Thread(target=self._report, name="pfcon-op-progress", daemon=True)
        self._reporter.start()

    def new(self, jid: str, kind: str, params: dict, attempt: int = 1) -> Operation:
        """A fresh record owned by this process (the caller saves it under the job's lock)."""
        now = now_text()
        return Operation(
            jid, kind, JobStatus.notStarted.value, "queued", dict(params), now, owner=self.me, attempt=attempt
        ).logged(f"{now} queued")

    def enqueue(self, op: Operation) -> Future[Operation | None]:
        return self._pool.submit(self._run, op)

    def resume(self) -> Future[None]:
        """Claim and redo the operations whose process stopped before they ended."""
        return self._pool.submit(self._resume_all)

    def _resume_all(self) -> None:
        for op in self.store.active():
            if owner_alive(op.owner):
                continue
            with self.store.lock(op.jid):
                current = self.store.load(op.jid, op.kind)
                if current is None or not current.active or owner_alive(current.owner):
                    continue
                redo = replace(
                    current,
                    status=JobStatus.notStarted.value,
                    message="queued again: the process that ran it stopped",
                    owner=self.me,
                    attempt=current.attempt + 1,
                    row_id=None,  # a new row: the interrupted attempt stays in the history
                ).logged(f"{now_text()} redone from the start: its process ({current.owner}) stopped")
                redo = self.store.save(redo)
            log.info("[%s] %s operation redone after a restart", op.jid, op.kind)
            self.enqueue(redo)

    # -- one operation ------------------------------------------------------------------------
    def _run(self, queued: Operation) -> Operation | None:
        """Run one attempt; returns its final record (None: it was not this attempt's to run).

        Each step is one conditional write of the record this thread holds: it lands only if
        the stored status is still the one before (not cancelled or removed meanwhile).
        """
        jid, kind, attempt = queued.jid, queued.kind, queued.attempt
        with self.store.run_lock(jid):
            op = self._started(queued)
            if not self.store.advance(op, JobStatus.notStarted.value):
                return None  # removed, cancelled or claimed by another attempt meanwhile
            progress = Progress()
            key = (jid, kind, attempt)
            with self._lock:
                self._running[key] = progress
            try:
                status, message = JobStatus.finishedSuccessfully, self.work(op, progress)
            except PfconError as error:
                status, message = JobStatus.finishedWithError, error.message
            except Exception:
                log.exception("[%s] %s operation failed unexpectedly", jid, kind)
                status, message = JobStatus.finishedWithError, "unexpected error; see pfcon's log"
            finally:
                with self._lock:
                    self._running.pop(key, None)
            ended = self._ended(op, status, message)
            if not self.store.advance(ended, JobStatus.started.value):
                return None
            log.info("[%s] %s operation %s: %s", jid, kind, status.value, message)
            outcome = "ok" if status is JobStatus.finishedSuccessfully else "failed"
            metrics.OPERATIONS.labels(PFCON6, kind, outcome).inc()
            return ended

    def _transition(
        self, jid: str, kind: str, attempt: int, expected: JobStatus, change: Callable[[Operation], Operation]
    ) -> Operation | None:
        """Apply ``change`` to the record if it is still this attempt in the ``expected`` status."""
        with self.store.lock(jid):
            op = self.store.load(jid, kind)
            if op is None or op.attempt != attempt or op.status != expected.value:
                return None
            changed = change(op)
            # conditional: the run's own last write may land between this read and this write
            return changed if self.store.advance(changed, expected.value) else None

    @staticmethod
    def _started(op: Operation) -> Operation:
        now = now_text()
        return replace(op, status=JobStatus.started.value, message=VERBS[op.kind], started_at=now).logged(
            f"{now} started"
        )

    @staticmethod
    def _ended(op: Operation, status: JobStatus, message: str) -> Operation:
        now = now_text()
        return replace(op, status=status.value, message=message, finished_at=now).logged(f"{now} {message}")

    def _report(self) -> None:
        """One thread for the runner: every ``report_seconds`` the progress of each running
        operation goes into its record (only when it moved)."""
        shown: dict[tuple[str, str, int], int] = {}
        while not self._closing.wait(self.report_seconds):
            with self._lock:
                running = list(self._running.items())
            shown = {key: shown.get(key, -1) for key, _ in running}
            for (jid, kind, attempt), progress in running:
                if progress.files == shown[(jid, kind, attempt)]:
                    continue
                shown[(jid, kind, attempt)] = progress.files
                line = progress_line(kind, progress)
                self._transition(jid, kind, attempt, JobStatus.started, _with_message(line))

    def shutdown(self) -> None:
        """Run nothing queued (it is redone by the next process to boot); wait (bounded) for
        the operations in flight and the progress reporter."""
        self._closing.set()
        self._pool.close(cancel_queued=True)
        join(self._reporter)


def _with_message(message: str) -> Callable[[Operation], Operation]:
    return lambda op: replace(op, message=message)
