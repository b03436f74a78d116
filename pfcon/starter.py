"""Starts accepted jobs on the engine off the request path.

Creating and starting a container takes the engine a few hundred milliseconds; a submission
answers 201 as soon as the data is staged and the job is recorded, and a small pool of
threads starts it. A start that fails is recorded, so the job reads ``finishedWithError``
with the engine's reason instead of staying ``notStarted``.
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import Future, ThreadPoolExecutor

from pfcon.compute.base import ComputeBackend, JobSpec
from pfcon.errors import PfconError
from pfcon.records import FAILED, SUBMITTED, JobRecords

log = logging.getLogger(__name__)


class JobStarter:
    def __init__(self, backend: ComputeBackend, records: JobRecords, workers: int) -> None:
        self.backend = backend
        self.records = records
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pfcon-start")

    def start(self, spec: JobSpec) -> Future[None]:
        return self._pool.submit(self._start, spec)

    def _start(self, spec: JobSpec) -> None:
        jid = spec.jid
        if self.records.load(jid) is None:
            log.info("[%s] deleted before it was started", jid)
            return
        try:
            self.backend.submit(spec)
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
        log.info("[%s] started", jid)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
