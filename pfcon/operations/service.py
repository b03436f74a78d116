"""pfcon 6's job flow: copy -> plugin -> upload -> delete, over the one job service.

The plugin step is an ordinary job of :class:`~pfcon.jobs.JobService` (the same record the
classic API reads); copy, upload and delete are operations (:mod:`pfcon.operations.runner`).
This module holds pfcon 6's rules between them, each decided under the job's records lock
so two POSTs racing for one jid get one job:

- idempotency: a POST for an existing job that has not failed answers that job as it is; a
  failed or undefined one is done again;
- ordering: a plugin needs its copy ``finishedSuccessfully`` (storages that copy), an upload
  needs its plugin ended (409 otherwise, pfcon 6's messages);
- skipped steps (copy where nothing is copied, upload where nothing is uploaded, delete of a
  job pfcon holds nothing of) are recorded as ``finishedSuccessfully`` like pfcon 6's answer,
  so a later GET finds them;
- a delete stops the job's plugin if it still runs (ChRIS cancels a job this way) and
  waits for a copy or upload in flight, instead of pfcon 6's 409.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from concurrent.futures import Future, wait
from dataclasses import replace
from typing import Any

from pfcon.compute.base import JobStatus
from pfcon.errors import JobNotFound, OutOfOrder
from pfcon.jobs import Accepted, JobService, Submission
from pfcon.observability.observer import PFCON6
from pfcon.operations.records import Operation, OperationStore, now_text
from pfcon.operations.runner import OperationRunner, human_bytes
from pfcon.storage.base import InputRequest, ListingOutput, Progress, ZipOutput
from pfcon.storage.copying import scan_files
from pfcon.storebase import safe_relative, validate_jid

log = logging.getLogger(__name__)

ANSWER_GRACE_SECONDS = 0.05
SKIPPED = {"copy": "copySkipped", "upload": "uploadSkipped", "delete": "deleteSkipped"}
REDO_PLUGIN = (JobStatus.finishedWithError, JobStatus.undefined)
ENDED_PLUGIN = (JobStatus.finishedSuccessfully, JobStatus.finishedWithError)


def copy_request(params: dict[str, Any]) -> InputRequest:
    return InputRequest(
        input_dirs=tuple(params.get("input_dirs", ())), output_dir=params["output_dir"], inputs_required=False
    )


class OperationService:
    def __init__(self, jobs: JobService, store: OperationStore, workers: int) -> None:
        self.jobs = jobs
        self.storage = jobs.storage
        self.storebase = jobs.storebase
        self.store = store
        self.runner = OperationRunner(store, self._work, workers)

    # -- server info ------------------------------------------------------------------------
    def server_info(self) -> dict[str, Any]:
        return {
            **self.jobs.server_info(),
            "requires_copy_job": self.storage.copies_input,
            "requires_upload_job": self.storage.uploads_output,
        }

    # -- copy, upload, delete: POST, GET, DELETE ----------------------------------------------
    def submit(self, kind: str, jid: str, params: dict[str, Any]) -> Operation:
        """Record (and queue) an operation, or answer the one already there."""
        jid = validate_jid(jid)
        self._check(kind, jid, params)
        with self.store.lock(jid):
            if self._skipped(kind, jid):
                return self._record_skip(kind, jid, params)
            if kind == "upload":
                self._require_plugin_ended(jid)  # pfcon 6 checks it before the idempotency
            existing = self.store.load(jid, kind)
            if existing is not None and not existing.redoable:
                return existing
            self._prepare(kind, jid, params, existing)
            op = self.runner.new(jid, kind, params, attempt=existing.attempt + 1 if existing else 1)
            op = self.store.save(op)
        return self._answer(op, self.runner.enqueue(op))

    def _answer(self, op: Operation, running: Future[Operation | None]) -> Operation:
        """The operation as it stands after a short grace: a small one answers its end at once.

        Waiting here (the request thread sleeps, the GIL is free) costs nothing and spares
        a client the first poll; a long operation answers ``started`` after the grace.
        """
        done, _ = wait([running], timeout=ANSWER_GRACE_SECONDS)  # never raises
        ended = running.result() if done and running.exception() is None else None
        return ended or self.store.load(op.jid, op.kind) or op

    def status(self, kind: str, jid: str) -> Operation:
        op = self.store.load(validate_jid(jid), kind)
        if op is None:
            raise JobNotFound(f"No {kind} job found for {jid!r}")
        return op

    def remove(self, kind: str, jid: str) -> None:
        """Forget the operation's record (an operation still running ends unrecorded)."""
        jid = validate_jid(jid)
        with self.store.lock(jid):
            self.store.remove(jid, kind)

    def _check(self, kind: str, jid: str, params: dict[str, Any]) -> None:
        """Refuse unsafe paths before anything else, whatever the storage does with them."""
        if kind == "copy":
            for name in params.get("input_dirs", ()):
                safe_relative(name, "input_dirs")
            safe_relative(params["output_dir"], "output_dir")
            if self.storage.copies_input and self.store.load(jid, kind) is None:
                self.storage.job_dirs(jid, copy_request(params))  # the folders are there and allowed
        elif kind == "upload":
            safe_relative(params["job_output_path"], "job_output_path")

    def _skipped(self, kind: str, jid: str) -> bool:
        if kind == "copy":
            return not self.storage.copies_input
        if kind == "upload":
            return not self.storage.uploads_output
        return not self.storebase.has_job(jid)

    def _record_skip(self, kind: str, jid: str, params: dict[str, Any]) -> Operation:
        existing = self.store.load(jid, kind)
        if existing is not None and not existing.redoable:
            return existing
        now = now_text()
        op = Operation(jid, kind, JobStatus.finishedSuccessfully.value, SKIPPED[kind], dict(params), now)
        op = op.logged(f"{now} {SKIPPED[kind]}: nothing to do in {self.storage.name} storage")
        self.store.save(op)
        return op

    def _require_plugin_ended(self, jid: str) -> None:
        if not self.jobs.has_record(jid):
            raise OutOfOrder("No plugin job found. A plugin job must finish before scheduling an upload job.")
        status = self.jobs.status(jid).info.status
        if status not in ENDED_PLUGIN:
            raise OutOfOrder(
                f"Plugin job has not completed yet (status: {status.value}). "
                "It must finish before scheduling an upload job."
            )

    def _prepare(self, kind: str, jid: str, params: dict[str, Any], existing: Operation | None) -> None:
        """Checks and claims for a new (or redone) operation; nothing of it is recorded yet."""
        if kind == "copy":
            if existing is not None:  # a redo: _check looked at the folders only for a new job
                self.storage.job_dirs(jid, copy_request(params))
            if existing is None or not self.storebase.has_job(jid):
                self.storebase.claim(jid)  # 409 if another job holds this jid
        elif kind == "delete":
            self._cancel_queued(jid)

    def _cancel_queued(self, jid: str) -> None:
        """A delete overtakes the job's copy or upload that has not started yet."""
        for kind in ("copy", "upload"):
            op = self.store.load(jid, kind)
            if op is not None and op.status == JobStatus.notStarted.value:
                message = "cancelled: a delete job came before it started"
                cancelled = replace(op, status=JobStatus.finishedWithError.value, message=message)
                # only if still queued: a copy that started meanwhile is waited for instead
                self.store.advance(cancelled.logged(f"{now_text()} {message}"), JobStatus.notStarted.value)

    # -- the work of each operation (in the runner's threads) ---------------------------------
    def _work(self, op: Operation, progress: Progress) -> str:
        began = time.monotonic()
        summary = {"copy": self._copy, "upload": self._upload, "delete": self._delete}[op.kind](op, progress)
        return f"{summary} in {time.monotonic() - began:.2f} s"

    def _copy(self, op: Operation, progress: Progress) -> str:
        if not self.storebase.has_job(op.jid):
            raise JobNotFound(f"job {op.jid!r}: its folder was deleted before the copy ran")
        request = copy_request(op.params)
        dirs = self.storage.job_dirs(op.jid, request)
        self.storebase.remove_job_data(op.jid)  # a copy done again starts clean
        staged = self.storage.stage_input(op.jid, request, dirs, progress)
        inputs = len(request.input_dirs)
        return (
            f"copied {staged.nfiles} files ({human_bytes(progress.bytes)}) "
            f"from {inputs} input dir{'s' * (inputs != 1)} into {dirs.input}"
        )

    def _upload(self, op: Operation, progress: Progress) -> str:
        path = op.params["job_output_path"]
        present = self.storage.upload_output(op.jid, path, progress)
        return (
            f"uploaded {progress.files} files ({human_bytes(progress.bytes)}) to {path}; "
            f"{present} already there"
        )

    def _delete(self, op: Operation, progress: Progress) -> str:
        stopped = self.jobs.cancel(op.jid)
        for folder in (self.storebase.incoming(op.jid), self.storebase.outgoing(op.jid)):
            for found in scan_files(os.fspath(folder)):
                progress.add(_size(found.path))
        self.storebase.remove_job_data(op.jid)
        summary = f"removed the job's data: {progress.files} files, {human_bytes(progress.bytes)}"
        return summary + (f"; stopped its plugin job, which was {stopped}" if stopped else "")

    # -- the plugin step ------------------------------------------------------------------------
    def submit_plugin(self, sub: Submission) -> Accepted:
        jid = validate_jid(sub.jid)
        for name in sub.data.input_dirs:  # 400 before any 409, as pfcon 6 validates first
            safe_relative(name, "input_dirs")
        if sub.data.output_dir:
            safe_relative(sub.data.output_dir, "output_dir")
        with self.store.lock(jid):
            redo = self.jobs.has_record(jid)
            if redo:
                state = self.jobs.status(jid)
                if state.info.status not in REDO_PLUGIN:
                    return Accepted(None, state)
                self.jobs.retire(jid)
                log.info("[%s] plugin job done again: it was %s", jid, state.info.status.value)
            if self.storage.copies_input:
                self._require_copy_done(jid)
                return self.jobs.submit_staged(sub)
            if redo:
                self.storage.delete(jid)  # staged again from this request
            return self.jobs.submit(sub)

    def _require_copy_done(self, jid: str) -> None:
        copy = self.store.load(jid, "copy")
        if copy is None:
            raise OutOfOrder(
                "No copy job found. A copy job must complete successfully before scheduling a plugin job."
            )
        if copy.status != JobStatus.finishedSuccessfully.value:
            raise OutOfOrder(
                f"Copy job has not completed successfully (status: {copy.status}). Run the copy job first."
            )

    def remove_plugin(self, jid: str) -> None:
        """``DELETE pluginjobs/<jid>/``: the container and the job folder; 204 even if neither is there."""
        with contextlib.suppress(JobNotFound):
            self.jobs.delete(jid)

    def resume(self) -> None:
        self.runner.resume()

    def close(self) -> None:
        self.runner.shutdown()

    def output(self, jid: str, job_output_paths: list[str]) -> ZipOutput | ListingOutput:
        """The output; the first of ``job_output_paths`` that is the job's own is listed.

        ChRIS's client sends the path unencoded, so a ``+`` in it arrives as a space: the
        route offers the raw form too, and the one naming the job's output wins.
        """
        validate_jid(jid)
        if not job_output_paths:
            if self.storage.uploads_output:
                return self.storage.zip_output(jid)
            return self.jobs.output(jid, None, PFCON6)
        for path in job_output_paths:
            if self.storage.owns_output_path(jid, path):
                return self.jobs.output(jid, path, PFCON6)
        return self.jobs.output(jid, job_output_paths[0], PFCON6)  # answers why it is not the job's


def _size(path: str) -> int:
    """A file's size for the log; 0 if it went or its path is too deep to name."""
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0
