"""The job service: submit, status, outputs and delete, over one storage and one engine.

Builds the command, the mounts and the :class:`JobSpec` from a validated submission; the
storage and the backend were chosen once at start-up, so nothing here branches on
STORAGE_ENV or CONTAINER_ENV.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pfcon.cache import ExpiringCache
from pfcon.compute.base import ComputeBackend, JobInfo, JobSpec, JobStatus, Mount, Resources
from pfcon.compute.volumes import HostPaths
from pfcon.errors import InvalidInput, JobNotFound
from pfcon.records import ACCEPTED, FAILED, JobRecord, JobRecords, utc_now
from pfcon.safetree import chmod_dir, open_dir
from pfcon.settings import Settings
from pfcon.starter import JobStarter
from pfcon.storage.base import InputRequest, JobDirs, ListingOutput, Storage, ZipOutput
from pfcon.storebase import StoreBase, validate_jid

INPUT_TARGET = "/share/incoming"
OUTPUT_TARGET = "/share/outgoing"
JOB_TYPE_LABEL = "org.chrisproject.job_type"

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


@dataclass(frozen=True)
class JobState:
    """A job's status and the tail of its logs: the ``compute`` part of an answer."""

    info: JobInfo
    logs: str = ""


@dataclass(frozen=True)
class StagedData:
    """The ``data`` part of a submit answer: what was staged for the job."""

    jid: str
    nfiles: int
    timestamp: str
    path: str


@dataclass(frozen=True)
class Accepted:
    """The answer to a submission: what was staged, and the job's first state."""

    data: StagedData
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
    ) -> None:
        self.settings = settings
        self.storebase = storebase
        self.storage = storage
        self.backend = backend
        self.volumes = volumes
        self.records = JobRecords(storebase)
        self.starter = JobStarter(backend, self.records, settings.start_workers, settings.start_retry_seconds)
        self._finished: ExpiringCache[JobState] = ExpiringCache(settings.finished_cache_seconds)

    # -- info -----------------------------------------------------------------------------
    def server_info(self) -> dict[str, Any]:
        return {
            "server_version": self.settings.server_version,
            "pfcon_innetwork": self.settings.pfcon_innetwork,
            "storage_env": self.settings.storage_env,
            "container_env": self.settings.container_env,
            "compute_volume_type": self.settings.compute_volume_type,
            **self.storage.info(),
        }

    def health(self) -> dict[str, str]:
        """Engine and storage descriptions; raises a domain error if either does not answer."""
        return {"engine": self.backend.ping(), "storage": self.storage.ping()}

    # -- submit ---------------------------------------------------------------------------
    def submit(self, sub: Submission) -> Accepted:
        jid = validate_jid(sub.jid)
        dirs = self.storage.job_dirs(jid, sub.data)
        spec = self._spec(sub, dirs)
        self.backend.validate(spec)
        self.storebase.claim(jid)
        try:
            staged = self.storage.stage_input(jid, sub.data, dirs)
            if staged.output_created:
                self._open_output(dirs, spec.user)
            else:
                log.info(
                    "[%s] output_dir %s existed: its owner and mode are left as they are", jid, dirs.output
                )
            record = JobRecord(
                jid, spec.image, spec.cmd, ACCEPTED, accepted_at=utc_now(), spec=spec.to_dict()
            )
            self.records.save(record)
        except BaseException:
            self.storage.delete(jid)  # a refused submission leaves nothing behind
            raise
        log.info("[%s] accepted: %d files staged, starting %s", jid, staged.nfiles, spec.image)
        self.starter.start(jid)
        data = StagedData(jid, staged.nfiles, record.accepted_at, staged.path)
        return Accepted(data, JobState(self._info_from_record(jid, record)))

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
        validate_jid(jid)
        record = self.records.load(jid)
        if record is None:
            self._finished.discard(jid)
        elif record.state == FAILED:  # a failed start leaves no container: no need to ask
            return JobState(self._info_from_record(jid, record))
        elif (cached := self._finished.get(jid)) is not None:
            return cached
        try:
            info, logs = self.backend.snapshot(jid, self.settings.job_logs_tail)
        except JobNotFound:
            return JobState(self._info_from_record(jid, record))
        answer = JobState(info, logs)
        if record is not None and info.status.terminal:
            self._finished.put(jid, answer)
        return answer

    def _info_from_record(self, jid: str, record: JobRecord | None) -> JobInfo:
        """What pfcon's own record says of a job the engine cannot describe (or 404)."""
        if record is None:
            if not self.storebase.has_job(jid):
                raise JobNotFound(f"job {jid!r} not found")
            return JobInfo(
                jid, "", "", JobStatus.undefined, "pfcon holds data for this job but no record of it", ""
            )
        vanished = (
            f"the {self.backend.name} engine no longer knows this job (removed behind pfcon's back?); "
            "its data is still held and can be deleted"
        )
        status, message = {
            ACCEPTED: (JobStatus.notStarted, record.message or "accepted, waiting to be started"),
            FAILED: (JobStatus.finishedWithError, record.message),
        }.get(record.state, (JobStatus.undefined, vanished))
        return JobInfo(record.jid, record.image, record.cmd, status, message, record.accepted_at)

    # -- output ---------------------------------------------------------------------------
    def output(self, jid: str, job_output_path: str | None) -> ZipOutput | ListingOutput:
        validate_jid(jid)
        if job_output_path is not None and not job_output_path.strip():
            raise InvalidInput("job_output_path: must not be empty")
        return self.storage.output(jid, job_output_path)

    # -- delete ---------------------------------------------------------------------------
    def delete(self, jid: str) -> None:
        """Remove the job from the engine, then its data; 404 only if neither knew it.

        The engine goes first so a running job cannot write into a folder being deleted, and
        an engine outage (503) leaves the data in place for a retry.
        """
        validate_jid(jid)
        self._finished.discard(jid)
        engine_step = self.backend.remove if self.settings.remove_jobs else self.backend.info
        try:
            engine_step(jid)
            in_engine = True
        except JobNotFound:
            in_engine = False
        had_data = self.storage.delete(jid)
        if not had_data and not in_engine:
            raise JobNotFound(f"job {jid!r} not found")
        log.info("[%s] deleted (engine: %s, data: %s)", jid, in_engine, had_data)

    def close(self) -> None:
        self.starter.shutdown()
        self.backend.close()
