"""The job service: submit, status, outputs and delete, over one storage and one engine.

Builds the command, the mounts and the :class:`JobSpec` from a validated submission; the
storage and the backend were chosen once at start-up, so nothing here branches on
STORAGE_ENV or CONTAINER_ENV.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pfcon.admission.queue import AdmissionQueue, QueueStats
from pfcon.cache import ExpiringCache
from pfcon.compute.base import ComputeBackend, JobInfo, JobSpec, JobStatus, Mount, Resources
from pfcon.compute.feed import LogTails, StateFeed, build_feed, same_run
from pfcon.compute.volumes import HostPaths
from pfcon.errors import InvalidInput, JobExists, JobNotFound, PfconError
from pfcon.observability.observer import CLASSIC, Observer
from pfcon.safetree import chmod_dir, open_dir
from pfcon.settings import Settings
from pfcon.starter import JobStarter
from pfcon.storage.base import InputRequest, JobDirs, ListingOutput, Storage, ZipOutput
from pfcon.store import HistoryPage, HistoryQuery, JobRow, JobStore, NewJob
from pfcon.store.repository import (
    ACCEPTED,
    CLAIM_LEASE,
    FINISHED,
    QUEUED,
    STARTED,
    Event,
    owner_is_dead,
    rfc3339,
    wait_until,
)
from pfcon.storebase import StoreBase, validate_jid

INPUT_TARGET = "/share/incoming"
OUTPUT_TARGET = "/share/outgoing"
JOB_TYPE_LABEL = "org.chrisproject.job_type"
WAITING = "accepted, waiting to be started"  # what a queued job says
RECORDED = frozenset({JobStatus.finishedSuccessfully, JobStatus.finishedWithError})
#: a running or finished job's row is read again at least this often, however often it is polled
ROW_REUSE_SECONDS = 1.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    """A validated ``POST jobs/`` form (see :mod:`pfcon.api.schemas`)."""

    jid: str
    image: str
    entrypoint: tuple[str, ...]
    type: str
    auid: str
    number_of_workers: int
    cpu_limit: int
    memory_limit: int
    gpu_limit: int
    args: tuple[str, ...] = ()
    args_path_flags: frozenset[str] = frozenset()
    env: tuple[tuple[str, str], ...] = ()
    data: InputRequest = field(default_factory=InputRequest)
    api: str = CLASSIC  # which wire API it came through (a store field and a metrics label)


@dataclass(frozen=True)
class JobState:
    """A job's status and the tail of its logs: the ``compute`` part of an answer."""

    info: JobInfo
    logs: str = ""


@dataclass(frozen=True)
class FinishedGuard:
    """A finished job's data folder (inode, change time) and the feed's view of it."""

    inode: int
    changed_ns: int
    seen: JobInfo | None


@dataclass(frozen=True)
class FinishedRow:
    """A finished job's row, reused while its guard holds (:meth:`JobService._finished_row`)."""

    row: JobRow
    guard: FinishedGuard


@dataclass(frozen=True)
class StagedData:
    """The ``data`` part of a submit answer: what was staged for the job."""

    jid: str
    nfiles: int
    timestamp: str
    path: str


@dataclass(frozen=True)
class Accepted:
    """The answer to a submission: what was staged (``None``: staged earlier), and its first state."""

    data: StagedData | None
    compute: JobState


def localize_path_args(args: Sequence[str], path_flags: Iterable[str], input_dir: str) -> list[str]:
    """Replace the value following each path flag with the job's input folder (ChRIS spec)."""
    flags = set(path_flags)
    out: list[str] = []
    replace_next = False
    for arg in args:
        out.append(input_dir if replace_next else arg)
        replace_next = not replace_next and arg in flags
    return out


def build_command(sub: Submission) -> tuple[str, ...]:
    """entrypoint + args (path flags localised) + [/share/incoming for ds] + /share/outgoing."""
    command = [*sub.entrypoint, *localize_path_args(sub.args, sub.args_path_flags, INPUT_TARGET)]
    if sub.type == "ds":
        command.append(INPUT_TARGET)
    command.append(OUTPUT_TARGET)
    return tuple(command)


class JobService:
    """The use cases behind the HTTP API."""

    def __init__(
        self,
        settings: Settings,
        storebase: StoreBase,
        storage: Storage,
        backend: ComputeBackend,
        volumes: HostPaths,
        store: JobStore,
        observer: Observer | None = None,
    ) -> None:
        self.settings = settings
        self.storebase = storebase
        self.storage = storage
        self.backend = backend
        self.volumes = volumes
        self.store = store
        self.observer = observer or Observer(storage.name)
        self.admission = (
            AdmissionQueue(settings.admission, store, backend.capacity) if settings.admission.queue else None
        )
        self.starter = JobStarter(
            backend,
            store,
            settings.start_workers,
            settings.start_retry_seconds,
            settings.history_days,
            observer=self.observer,
            admission=self.admission,
            settle=self.settle_running if self.admission is not None else None,
        )
        self.feed: StateFeed = build_feed(
            backend,
            store,
            settings.job_logs_tail,
            self.observer.finished,
            freed=self.starter.freed if self.admission is not None else None,
        )
        self.tails = LogTails(backend.logs, settings.job_logs_tail)
        #: runs a wake-up of the scheduler; the app defers it until the answer is sent
        #: (:mod:`pfcon.api.afterreply`), so the scheduler's pass does not slow the submit
        self.after_reply: Callable[[Callable[[], None]], None] = _at_once
        self.started_rows: ExpiringCache[JobRow] = ExpiringCache(ROW_REUSE_SECONDS)
        self.finished_rows: ExpiringCache[FinishedRow] = ExpiringCache(ROW_REUSE_SECONDS)

    # -- info -----------------------------------------------------------------------------
    def server_info(self) -> dict[str, Any]:
        return {
            "server_version": self.settings.server_version,
            "pfcon_innetwork": self.settings.pfcon_innetwork,
            "storage_env": self.settings.storage_env,
            "container_env": self.settings.container_env,
            "compute_volume_type": self.settings.compute_volume_type,
            **self.storage.info(),
            **({"queue": self.admission.stats()} if self.admission is not None else {}),
        }

    def queue_stats(self) -> QueueStats | None:
        """Capacity, its use and the queue's length (None: the engine queues jobs itself).

        Read from the store, never the engine (once the capacity is known): for metrics.
        """
        return self.admission.stats() if self.admission is not None else None

    def health(self) -> dict[str, str]:
        """Engine, storage and database descriptions; raises a domain error if one does not answer."""
        return {"engine": self.backend.ping(), "storage": self.storage.ping(), "database": self.store.ping()}

    # -- submit ---------------------------------------------------------------------------
    def submit(self, sub: Submission) -> Accepted:
        """Record the job (the jid is taken), stage its input, queue it; the scheduler starts it.

        The store is written before anything is staged, so a database outage is a 503 that
        leaves nothing behind, and a refused submission leaves neither data nor a record.
        """
        jid = validate_jid(sub.jid)
        dirs = self.storage.job_dirs(jid, sub.data)
        spec = self._spec(sub, dirs)
        self._validate(spec)
        row = self.store.accept(_new_job(sub, spec, dirs))
        try:
            self.storebase.claim(jid)
        except JobExists:
            self.store.forget(row.id)
            raise
        try:
            began = time.perf_counter()
            staged = self.storage.stage_input(jid, sub.data, dirs)
            staging_seconds = time.perf_counter() - began
            if staged.output_created:
                self._open_output(dirs, spec.user)
            else:
                log.info(
                    "[%s] output_dir %s existed: its owner and mode are left as they are", jid, dirs.output
                )
            if not self.store.queue(row.id, spec.to_dict(), WAITING):
                raise JobNotFound(f"job {jid!r} was deleted while its input was being staged")
        except BaseException:
            self.storage.delete(jid)  # a refused submission leaves nothing behind
            with contextlib.suppress(PfconError):
                self.store.forget(row.id)
            raise
        log.info("[%s] accepted: %d files staged, starting %s", jid, staged.nfiles, spec.image)
        self.observer.accepted(sub.api, staging_seconds)
        self.after_reply(self.starter.wake)
        timestamp = rfc3339(row.accepted_at)
        data = StagedData(jid, staged.nfiles, timestamp, staged.path)
        return Accepted(data, JobState(_queued_info(spec, timestamp)))

    def submit_staged(self, sub: Submission) -> Accepted:
        """Record and queue a job whose input a copy operation staged (pfcon 6's plugin job)."""
        jid = validate_jid(sub.jid)
        dirs = self.storage.staged_dirs(jid, sub.data.output_dir)
        spec = self._spec(sub, dirs)
        self._validate(spec)
        row = self.store.accept(_new_job(sub, spec, dirs))
        self._open_output(dirs, spec.user)
        if not self.store.queue(row.id, spec.to_dict(), "accepted, waiting to be started"):
            raise JobNotFound(f"job {jid!r} was deleted while it was being accepted")
        log.info("[%s] accepted on staged input, starting %s", jid, spec.image)
        self.after_reply(self.starter.wake)
        return Accepted(None, JobState(_queued_info(spec, rfc3339(row.accepted_at))))

    def has_record(self, jid: str) -> bool:
        return self.store.live(jid) is not None

    def retire(self, jid: str) -> None:
        """Put a failed plugin job into the history and remove its container, to run it again."""
        row = self.store.tombstone(jid)
        self._forget_rows(jid)
        if row is not None and row.claimed:
            wait_until(lambda: not self._claimed(row.id), CLAIM_LEASE.total_seconds())
        with contextlib.suppress(JobNotFound):
            self.backend.remove(jid)
        self.feed.forget(jid)  # what it saw was the old container's: not the next one's
        self._forget_running(jid)

    def cancel(self, jid: str) -> str | None:
        """Stop a plugin job that has not ended; returns how far it had come (None: it had ended).

        A start in flight is waited for, so the container it makes is the one stopped. The
        job then reads ``finishedWithError``, ``cancelled: ...``, with its last logs.
        """
        row = self.store.live(jid)
        if row is not None and row.claimed:
            wait_until(lambda: not self._claimed(row.id), CLAIM_LEASE.total_seconds())
        state = self.status(jid) if row is not None else None
        if state is None or state.info.status.terminal:
            return None
        came_to = state.info.status.value
        message = f"cancelled: stopped while {came_to} (a delete job came for it)"
        if self.store.mark_finished(row.id, JobStatus.finishedWithError.value, message, logs=state.logs):
            self._forget_running(jid)
            with contextlib.suppress(JobNotFound):
                self.backend.remove(jid)
            self.starter.wake()  # its share of the admission queue's capacity is free
            log.info("[%s] cancelled while %s", jid, came_to)
            return came_to
        return None

    def _validate(self, spec: JobSpec) -> None:
        """The engine can run it, and it fits in the queue's whole capacity (else a 400)."""
        self.backend.validate(spec)
        if self.admission is not None:
            self.admission.check(spec.resources)

    def _spec(self, sub: Submission, dirs: JobDirs) -> JobSpec:
        settings = self.settings
        env = dict(sub.env)
        if settings.enable_home_workaround:
            env["HOME"] = "/tmp"
        limits = not settings.ignore_limits
        return JobSpec(
            jid=sub.jid,
            image=sub.image,
            command=build_command(sub),
            env=env,
            resources=Resources(
                number_of_workers=sub.number_of_workers,
                cpu_millicores=sub.cpu_limit if limits else None,
                memory_mib=sub.memory_limit if limits else None,
                gpus=sub.gpu_limit,
            ),
            mounts=(
                Mount(self.volumes.source(dirs.input), INPUT_TARGET, read_only=True),
                Mount(self.volumes.source(dirs.output), OUTPUT_TARGET, read_only=False),
            ),
            user=settings.container_user.pick() if settings.container_user else None,
            labels={**settings.job_labels, JOB_TYPE_LABEL: "plugin"},
            shm_size_mib=settings.shm_size_mib,
        )

    def _open_output(self, dirs: JobDirs, user: str | None) -> None:
        """Let a job running as CONTAINER_USER write the output folder this job created.

        Never through a symlink: the folder is changed relative to its parent, no-follow.
        """
        if not user:
            return
        parent, name = os.path.split(self.storebase.root / dirs.output)
        uid, gid = (int(part) for part in user.split(":"))
        parent_fd = open_dir(parent)
        try:
            os.chown(name, uid, gid, dir_fd=parent_fd, follow_symlinks=False)
        except PermissionError:
            chmod_dir(parent_fd, name, 0o777)
        finally:
            os.close(parent_fd)

    # -- status ---------------------------------------------------------------------------
    def status(self, jid: str) -> JobState:
        """From the store, and for a running job from the engine's feed (no engine call).

        A finished job answers its recorded status and log tail however often it is asked,
        even after the engine forgot it (Kubernetes deletes finished Jobs after a day). A
        running job answers what the feed last saw and a log tail at most a second old, from
        its record read at most a second before (:meth:`_started_row`); only when the feed
        cannot vouch for it (not seen yet, stream down) is the engine asked.
        """
        validate_jid(jid)
        row = self._started_row(jid) or self._finished_row(jid) or self._row(jid)
        if row is None:
            return JobState(self._unrecorded(jid))
        if row.state != STARTED:
            return JobState(_info_of(row), row.logs or "")
        try:
            info, logs = self._running(row)
        except JobNotFound:
            return JobState(self._vanished(row))
        if info.status in RECORDED:
            self._forget_running(jid)
            self._record_end(row, info, logs)
        return JobState(info, logs)

    def _row(self, jid: str) -> JobRow | None:
        """The job's live row from the store (a started one is kept for :meth:`_started_row`)."""
        guard = self._finished_guard(jid)  # before the read: a later change can only differ
        row = self.store.live(jid)
        if row is not None and row.state == ACCEPTED and owner_is_dead(row.owner):
            self.store.fail_interrupted()
            row = self.store.live(jid) or row
        if row is not None and row.state == STARTED:
            self.started_rows.put(jid, row)
        if row is not None and row.state == FINISHED and guard is not None:
            self.finished_rows.put(jid, FinishedRow(row, guard))
        return row

    def _finished_row(self, jid: str) -> JobRow | None:
        """The finished job's row as read less than ``ROW_REUSE_SECONDS`` ago, while its data
        folder is the one it had then and the feed says what it said then; else ``None``.

        A finished job's record changes only when the job is deleted or (pfcon 6) retired to
        run again: a status poll on PostgreSQL was one round trip for an answer that cannot
        change. This process forgets the row at once when it deletes or retires the job. A
        DELETE through another process removes the data folder (the poll after it reads the
        store and answers 404); a retire through another process removes the job's container,
        which the feed sees; only a retire of a job whose container was already gone shows
        here as late as ``ROW_REUSE_SECONDS`` (the same bound as a running job's row).
        """
        reused = self.finished_rows.get(jid)
        if reused is None:
            return None
        if self._finished_guard(jid) != reused.guard:
            self.finished_rows.discard(jid)
            return None
        return reused.row

    def _finished_guard(self, jid: str) -> FinishedGuard | None:
        """What tells a reused finished row from a stale one: the identity of the job's data
        folder (a deleted one is gone, a new one of a reused jid differs) and the feed's view
        of its container. ``None``: no folder, nothing to vouch for a reuse."""
        try:
            folder = os.stat(self.storebase.job_dir(jid))
        except OSError:
            return None
        return FinishedGuard(folder.st_ino, folder.st_ctime_ns, self.feed.current(jid))

    def _started_row(self, jid: str) -> JobRow | None:
        """The started job's row as read less than ``ROW_REUSE_SECONDS`` ago, while the feed
        vouches that this run is still running; else ``None`` (read the store).

        A ChRIS backend polls each running job every few seconds, and the store read was the
        largest share of such a poll's CPU although the row of a running job changes only
        when the job ends, is cancelled or deleted. This process forgets the row at once when
        it does any of these; another process's change shows here when the feed sees the job's
        container stop or leave (its event), and at the latest after ``ROW_REUSE_SECONDS``.
        """
        row = self.started_rows.get(jid)
        if row is None:
            return None
        info = self.feed.current(jid)
        if info is None or info.status is not JobStatus.started or not same_run(info, row):
            self.started_rows.discard(jid)
            return None
        return row

    def _forget_running(self, jid: str) -> None:
        """The job ended, was cancelled or deleted: its log tail and row are not reused."""
        self.tails.forget(jid)
        self._forget_rows(jid)

    def _forget_rows(self, jid: str) -> None:
        """No poll here answers from the job's record as last read: it is gone or changing."""
        self.started_rows.discard(jid)
        self.finished_rows.discard(jid)

    def _record_end(self, row: JobRow, info: JobInfo, logs: str) -> None:
        if self.store.mark_finished(
            row.id, info.status.value, info.message, info.exit_code, logs, info.timestamp or None
        ):
            self.observer.finished(row, info.status.value)
            self.starter.wake()  # its resources are free

    def settle_running(self) -> int:
        """Record the end of every started job the engine says ended or no longer has.

        One engine call lists every job container; only the jobs that ended are inspected.
        The store is read first, so a job started meanwhile is never taken for vanished.
        Returns how many ends were recorded.
        """
        rows = self.store.running()
        if not rows:
            return 0
        containers = self.backend.job_containers()
        ended = 0
        for row in rows:
            if containers.get(row.jid):
                continue
            if row.jid in containers:
                with contextlib.suppress(JobNotFound):
                    self.status(row.jid)
            else:
                info = self._vanished(row)
                self.store.mark_finished(row.id, info.status.value, info.message, timestamp=info.timestamp)
            ended += 1
        return ended

    def _running(self, row: JobRow) -> tuple[JobInfo, str]:
        jid = row.jid
        info = self.feed.current(jid)
        if info is None or not same_run(info, row):
            return self.backend.snapshot(jid, self.settings.job_logs_tail)
        if info.status in RECORDED:  # the final tail, not one read a second ago
            return info, self.backend.logs(jid, self.settings.job_logs_tail)
        return info, self.tails.get(jid)

    def _unrecorded(self, jid: str) -> JobInfo:
        if not self.storebase.has_job(jid):
            raise JobNotFound(f"job {jid!r} not found")
        return JobInfo(
            jid, "", "", JobStatus.undefined, "pfcon holds data for this job but no record of it", ""
        )

    def _vanished(self, row: JobRow) -> JobInfo:
        message = (
            f"the {self.backend.name} engine no longer knows this job (removed behind pfcon's back?); "
            "its data is still held and can be deleted"
        )
        return JobInfo(row.jid, row.image, row.cmd, JobStatus.undefined, message, rfc3339(row.started_at))

    # -- output ---------------------------------------------------------------------------
    def output(self, jid: str, job_output_path: str | None, api: str = CLASSIC) -> ZipOutput | ListingOutput:
        validate_jid(jid)
        if job_output_path is not None and not job_output_path.strip():
            raise InvalidInput("job_output_path: must not be empty")
        return self.observer.delivering(api, self.storage.output(jid, job_output_path))

    # -- delete ---------------------------------------------------------------------------
    def delete(self, jid: str) -> None:
        """Mark the job deleted, remove it from the engine (with REMOVE_JOBS=no: stop it there),
        then its data; 404 if none knew it.

        The record is tombstoned first, so a start racing this DELETE cannot follow it (the
        starter removes what it created); a start already in flight is waited for. The engine
        goes before the data so a running job cannot write into a folder being deleted; if
        either fails (503, 409) the record is restored and the DELETE can be retried.
        """
        validate_jid(jid)
        self._stop_running(jid)
        row = self.store.tombstone(jid)
        self._forget_rows(jid)  # no poll here answers from it once the record is gone
        if row is not None and row.claimed:
            wait_until(lambda: not self._claimed(row.id), CLAIM_LEASE.total_seconds())
        engine_step = self.backend.remove if self.settings.remove_jobs else self.backend.stop
        try:
            try:
                engine_step(jid)
                in_engine = True
            except JobNotFound:
                in_engine = False
            had_data = self.storage.delete(jid)
        except PfconError as error:
            if row is not None:
                self.store.restore(row, error.message)
            raise
        self.feed.forget(jid)
        self._forget_running(jid)
        if row is None and not had_data and not in_engine:
            raise JobNotFound(f"job {jid!r} not found")
        log.info("[%s] deleted (engine: %s, data: %s)", jid, in_engine, had_data)
        self.starter.wake()  # what it held or where it stood in the queue is free

    def _stop_running(self, jid: str) -> None:
        """With the queue, a running job's container goes before its record: until it is gone
        its resources still count, so the job it makes room for never overlaps it."""
        if self.admission is None or not self.settings.remove_jobs:
            return
        row = self.store.live(jid)
        if row is not None and row.state == STARTED:
            with contextlib.suppress(JobNotFound):
                self.backend.remove(jid)

    # -- history --------------------------------------------------------------------------
    def history(self, query: HistoryQuery) -> HistoryPage:
        return self.store.history(query)

    def job_history(self, jid: str) -> tuple[JobRow, list[Event]]:
        """The newest job of ``jid`` (its plugin job before its operations) and its events."""
        validate_jid(jid)
        row = self.store.latest(jid, kind="plugin") or self.store.latest(jid)
        if row is None:
            raise JobNotFound(f"no job {jid!r} in the history")
        return row, self.store.events(row.id)

    def _claimed(self, job_id: int) -> bool:
        row = self.store.get(job_id)
        return row is not None and row.claimed

    def close(self) -> None:
        self.feed.close()
        self.starter.shutdown()
        self.backend.close()
        self.store.close()


def _at_once(work: Callable[[], None]) -> None:
    work()


def _queued_info(spec: JobSpec, timestamp: str) -> JobInfo:
    return JobInfo(
        spec.jid, spec.image, spec.cmd, JobStatus.notStarted, "accepted, waiting to be started", timestamp
    )


def _new_job(sub: Submission, spec: JobSpec, dirs: JobDirs) -> NewJob:
    return NewJob(
        jid=spec.jid,
        kind="plugin",
        api=sub.api,
        image=spec.image,
        cmd=spec.cmd,
        auid=sub.auid,
        container_user=spec.user,
        cpu_millicores=spec.resources.cpu_millicores,
        memory_mib=spec.resources.memory_mib,
        gpus=spec.resources.gpus,
        number_of_workers=spec.resources.number_of_workers,
        input_path=dirs.input,
        output_path=dirs.output,
        message="accepted, staging its input",
    )


def _info_of(row: JobRow) -> JobInfo:
    """What the store says of a job that is not running on the engine."""
    timestamp = row.timestamp or rfc3339(row.finished_at if row.state == FINISHED else row.accepted_at)
    message = row.message or (WAITING if row.state == QUEUED else "")
    return JobInfo(row.jid, row.image, row.cmd, JobStatus(row.status), message, timestamp, row.exit_code)
