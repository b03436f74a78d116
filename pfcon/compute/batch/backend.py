"""The logic every batch scheduler shares; a scheduler itself is data (:mod:`pfcon.compute.batch.scheduler`).

:class:`BatchBackend` renders the batch script from a visible template, submits it, reads the
state from the scheduler while it knows the job and from the files the script leaves in the
job's folder once it does not (:mod:`pfcon.compute.batch.jobfiles`, :mod:`pfcon.compute.batch.outcome`),
tails the output file, and cancels.

Commands run with a timeout; a controller that does not answer is
:class:`~pfcon.errors.BackendUnavailable` (503), a job the scheduler refuses is
:class:`~pfcon.errors.InvalidJob`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pfcon.compute.base import Capabilities, ComputeBackend, JobInfo, JobSpec, JobStatus, utc_now
from pfcon.compute.batch import jobfiles
from pfcon.compute.batch.jobfiles import JobFiles
from pfcon.compute.batch.outcome import decide
from pfcon.compute.batch.runtimes import JID_LABEL, Runtime, run_command
from pfcon.compute.batch.scheduler import BatchOptions, QueueState, Scheduler, time_limit
from pfcon.compute.batch.script import ScriptTemplate
from pfcon.errors import BackendUnavailable, InvalidJob, JobExists, JobNotFound

log = logging.getLogger(__name__)


class CommandFailed(Exception):
    """A scheduler command answered with an error that is not an outage."""


class BatchBackend(ComputeBackend):
    """Runs each job as one batch job whose script runs the job's container on its node."""

    def __init__(
        self,
        scheduler: Scheduler,
        runtime: Runtime,
        template: ScriptTemplate,
        options: BatchOptions,
        pfcon_root: Path,
        node_root: str,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.runtime = runtime
        self.template = template
        self.options = options
        self.pfcon_root = pfcon_root
        self.node_root = node_root
        self.environ = dict(os.environ if environ is None else environ)
        self.name = scheduler.name
        self._version: str | None = None
        self.capabilities = Capabilities(
            max_workers=1,
            gpus=True,
            shm_size=runtime.shm_flag is not None,
            labels=runtime.label_flag is not None,
        )

    # -- commands -------------------------------------------------------------------------
    def _run(self, argv: Sequence[str], timeout: float | None = None) -> str:
        """Run a scheduler command; outages raise BackendUnavailable, refusals CommandFailed."""
        try:
            done = subprocess.run(
                list(argv),
                capture_output=True,
                text=True,
                env=self.environ,
                timeout=timeout or self.options.command_timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except FileNotFoundError:
            raise BackendUnavailable(f"{argv[0]} is not installed on pfcon's host ({self.name})") from None
        except subprocess.TimeoutExpired:
            raise BackendUnavailable(
                f"the {self.name} controller does not answer: {argv[0]} took over "
                f"{timeout or self.options.command_timeout:g} s"
            ) from None
        if done.returncode != 0:
            detail = (done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}")[-500:]
            if self.scheduler.unavailable.search(detail):
                raise BackendUnavailable(f"the {self.name} controller does not answer: {detail}")
            raise CommandFailed(detail)
        return done.stdout

    def _queue_state(self, job_id: str) -> QueueState | None:
        """The scheduler's view of the job, or ``None`` once it has forgotten it."""
        try:
            return self.scheduler.parse_state(self._run([*self.scheduler.query, job_id]))
        except CommandFailed as failure:
            if self.scheduler.unknown_job.search(str(failure)):
                return None
            raise BackendUnavailable(f"{self.name} could not report job {job_id}: {failure}") from None

    def _accounting_state(self, job_id: str) -> QueueState | None:
        scheduler = self.scheduler
        if not (self.options.accounting and scheduler.accounting and scheduler.parse_accounting):
            return None
        try:
            return scheduler.parse_accounting(self._run([*scheduler.accounting, job_id]))
        except CommandFailed:
            return None

    # -- interface ------------------------------------------------------------------------
    def ping(self) -> str:
        answer = self._controller_answers()
        if self._version is None:
            try:
                self._version = self._run(self.scheduler.version).strip() or self.name
            except CommandFailed:
                return f"{self.name} ({answer}; runtime {self.runtime.name})"
        return f"{self._version} ({answer}; runtime {self.runtime.name})"

    def _controller_answers(self) -> str:
        """The controller's own answer to a ping; BackendUnavailable when there is none."""
        try:
            answer = self._run(self.scheduler.ping).strip()
        except CommandFailed as failure:
            raise BackendUnavailable(f"the {self.name} controller does not answer: {failure}") from None
        if not self.scheduler.parse_ping(answer):
            raise BackendUnavailable(f"the {self.name} controller does not answer: {answer}")
        return answer

    def validate(self, spec: JobSpec) -> None:
        super().validate(spec)
        problem = self.runtime.unsupported(spec)
        if problem:
            raise InvalidJob(problem)
        time_limit(spec, self.options.time_limit_minutes)
        self._check_image(spec.image)
        if (self._files(spec.jid).path / jobfiles.JOB).exists():
            raise JobExists(f"job {spec.jid!r} already exists on {self.name}")
        self._controller_answers()  # one that does not answer is a 503 now, not a failed job later

    def submit(self, spec: JobSpec) -> JobInfo:
        files = self._files(spec.jid)
        if not files.create():
            raise JobExists(f"job {spec.jid!r} already exists on {self.name}")
        script = files.write_text(jobfiles.SCRIPT, self.render(spec, files))
        try:
            answer = self._run([*self.scheduler.submit, str(script)])
        except CommandFailed as failure:
            files.remove()
            raise InvalidJob(f"{self.name} refused the job: {failure}") from None
        except BackendUnavailable:
            files.remove()
            raise
        job_id = self.scheduler.parse_job_id(answer)
        if job_id is None:
            raise BackendUnavailable(
                f"{self.name}: unexpected answer to {self.scheduler.submit[0]}: {answer!r}"
            )
        record = {
            "job_id": job_id,
            "image": spec.image,
            "cmd": spec.cmd,
            "submitted_at": utc_now(),
            "time_limit_minutes": time_limit(spec, self.options.time_limit_minutes),
            "memory_mib": spec.resources.memory_mib,
        }
        files.write_json(jobfiles.JOB, record)
        log.info("[%s] submitted to %s as job %s", spec.jid, self.name, job_id)
        info = self._info(spec.jid, record, JobStatus.notStarted, f"queued in {self.name} as job {job_id}")
        return dataclasses.replace(info, engine_id=job_id)

    def info(self, jid: str) -> JobInfo:
        files = self._files(jid)
        record = self._record(files, jid)
        return self._judge(jid, files, record, lambda: self._queue_state(record["job_id"]))

    def poll_all(self, jids: Iterable[str]) -> dict[str, JobInfo]:
        """One scheduler query for all live jobs (not one per job), then each job's files."""
        scheduler = self.scheduler
        if not (scheduler.query_many and scheduler.parse_states):
            return super().poll_all(jids)
        records: dict[str, tuple[JobFiles, Mapping[str, Any]]] = {}
        for jid in jids:
            files = self._files(jid)
            record = files.read_json(jobfiles.JOB)
            if record is not None:
                records[jid] = (files, record)
        unsettled = [r["job_id"] for f, r in records.values() if not (f.path / jobfiles.FINAL).exists()]
        queues = self._queue_states(unsettled)
        return {
            jid: self._judge(jid, files, record, lambda record=record: queues.get(record["job_id"]))
            for jid, (files, record) in records.items()
        }

    def _queue_states(self, job_ids: Sequence[str]) -> dict[str, QueueState]:
        """The scheduler's view of many jobs in one query; a job it forgot is missing."""
        if not job_ids:
            return {}
        scheduler = self.scheduler
        assert scheduler.query_many and scheduler.parse_states
        try:
            return scheduler.parse_states(self._run([*scheduler.query_many, ",".join(job_ids)]))
        except CommandFailed as failure:
            if scheduler.unknown_job.search(str(failure)):
                return {}
            raise BackendUnavailable(f"{self.name} could not report its jobs: {failure}") from None

    def _judge(
        self, jid: str, files: JobFiles, record: Mapping[str, Any], ask: Callable[[], QueueState | None]
    ) -> JobInfo:
        final = files.read_json(jobfiles.FINAL)
        if final is not None:
            return self._info(jid, record, JobStatus(final["status"]), final["message"], final["timestamp"])
        queue = ask()  # before the files: the script writes first
        status_file = files.read_fields(jobfiles.STATUS)
        started = files.read_fields(jobfiles.STARTED) or {}
        if status_file is None and queue is None:
            queue = self._accounting_state(record["job_id"])
        status, message = decide(self.scheduler, record, queue, status_file, started)
        timestamp = (
            (status_file or {}).get("finished_at") or started.get("started_at") or record["submitted_at"]
        )
        if status.terminal:
            settled = {"status": status.value, "message": message, "timestamp": timestamp}
            with contextlib.suppress(OSError):  # being deleted meanwhile: the answer stands
                files.write_json(jobfiles.FINAL, settled)
        return self._info(jid, record, status, message, timestamp)

    def logs(self, jid: str, tail: int) -> str:
        files = self._files(jid)
        self._record(files, jid)
        return files.tail(jobfiles.OUTPUT, tail)

    def remove(self, jid: str) -> None:
        """Cancel the job, wait until its script (and so its container) is gone, forget it."""
        self.stop(jid)
        self._files(jid).remove()
        log.info("[%s] removed from %s", jid, self.name)

    def stop(self, jid: str) -> None:
        """Cancel the job and wait until its script (and so its container) is gone."""
        job_id = self._record(self._files(jid), jid)["job_id"]
        if self.scheduler.is_active(self._queue_state(job_id)):
            try:
                self._run([*self.scheduler.cancel, job_id])
            except CommandFailed as failure:
                log.info("[%s] cancel of %s job %s: %s", jid, self.name, job_id, failure)
            self._wait_until_gone(jid, job_id)

    # -- helpers --------------------------------------------------------------------------
    def render(self, spec: JobSpec, files: JobFiles) -> str:
        """The batch script for ``spec`` (also what ``pfcon slurm-script --example`` prints)."""
        runtime = self.runtime
        limit = time_limit(spec, self.options.time_limit_minutes)
        directives = self.scheduler.directives(spec, files, self.options, limit)
        return self.template.render(
            {
                "directives": "\n".join(directives),
                "jid": spec.jid,
                "image": shlex.quote(spec.image),
                "runtime": runtime.name,
                "job_dir": shlex.quote(files.node_path),
                "run": run_command(runtime, spec, {JID_LABEL: spec.jid}),
                "stop": runtime.stop,
                "status": runtime.status,
                "cleanup": runtime.cleanup,
            }
        )

    def _files(self, jid: str) -> JobFiles:
        return JobFiles.of(self.pfcon_root, self.node_root, jid, self.scheduler.name)

    def _record(self, files: JobFiles, jid: str) -> dict[str, Any]:
        record = files.read_json(jobfiles.JOB)
        if record is None:
            raise JobNotFound(f"job {jid!r} is not known to {self.name}")
        return record

    def _info(
        self, jid: str, record: Mapping[str, Any], status: JobStatus, message: str, timestamp: str = ""
    ) -> JobInfo:
        return JobInfo(
            jid, record["image"], record["cmd"], status, message, timestamp or record["submitted_at"]
        )

    def _check_image(self, image: str) -> None:
        check = self.runtime.image_check
        if not (self.options.check_images and check):
            return
        try:
            done = subprocess.run(
                [*check, image], capture_output=True, timeout=self.options.command_timeout, check=False
            )
        except (FileNotFoundError, subprocess.TimeoutExpired) as error:
            raise BackendUnavailable(f"cannot ask {self.runtime.name} for the image: {error}") from None
        if done.returncode != 0:
            raise InvalidJob(
                f"image: {image!r} is not present on the {self.runtime.name} engine of the nodes; "
                "pfcon does not pull images, load or pull it on the nodes first"
            )

    def _wait_until_gone(self, jid: str, job_id: str) -> None:
        deadline = time.monotonic() + self.options.cancel_wait
        while self.scheduler.is_active(self._queue_state(job_id)):
            if time.monotonic() > deadline:
                log.warning("[%s] %s job %s still active after cancel", jid, self.name, job_id)
                return
            time.sleep(0.25)
