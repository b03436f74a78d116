"""Slurm, as data for :class:`~pfcon.compute.batch.backend.BatchBackend` (CONTAINER_ENV=slurm).

``sbatch --parsable`` submits the rendered script, ``scancel`` cancels, ``squeue -t all``
reports a job while Slurm remembers it (``MinJobAge``), ``sacct`` only when the site has
accounting storage (SLURM_ACCOUNTING=yes); ``scontrol ping`` is the health check. A job's
resources become ``#SBATCH`` lines; Slurm's states map to pfcon's through :data:`STATES`.
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from pfcon.compute.base import JobSpec, JobStatus, Mount, Resources
from pfcon.compute.batch import jobfiles
from pfcon.compute.batch.backend import BatchBackend
from pfcon.compute.batch.jobfiles import JobFiles
from pfcon.compute.batch.runtimes import RUNTIMES
from pfcon.compute.batch.scheduler import BatchOptions, QueueState, Scheduler
from pfcon.compute.batch.script import ScriptTemplate
from pfcon.compute.volumes import HostPaths
from pfcon.settings import Settings, SettingsError

TEMPLATE = "slurm-job.sh"
_started, _queued, _failed = JobStatus.started, JobStatus.notStarted, JobStatus.finishedWithError

#: squeue/sacct job state -> (status, message). {id} {reason} {limit} {node} are filled in.
STATES: Mapping[str, tuple[JobStatus, str]] = {
    "PENDING": (_queued, "queued in slurm as job {id}{reason}"),
    "REQUEUED": (_queued, "requeued in slurm as job {id}{reason}"),
    "REQUEUE_HOLD": (_queued, "held in slurm after a requeue, job {id}{reason}"),
    "REQUEUE_FED": (_queued, "requeued by the slurm federation, job {id}"),
    "RESV_DEL_HOLD": (_queued, "held in slurm, job {id}: its reservation was deleted"),
    "SPECIAL_EXIT": (_queued, "held in slurm after a special exit, job {id}"),
    "CONFIGURING": (_queued, "slurm job {id} is getting its node ready"),
    "RUNNING": (_started, "running on {node} as slurm job {id}"),
    "COMPLETING": (_started, "slurm job {id} is completing"),
    "SIGNALING": (_started, "slurm job {id} is being signalled"),
    "STAGE_OUT": (_started, "slurm job {id} is staging out"),
    "RESIZING": (_started, "slurm job {id} is resizing"),
    "SUSPENDED": (_started, "slurm job {id} is suspended"),
    "STOPPED": (_started, "slurm job {id} is stopped (SIGSTOP)"),
    "COMPLETED": (JobStatus.finishedSuccessfully, "completed"),
    "FAILED": (_failed, "slurm job {id} failed before it recorded an exit status{reason}"),
    "CANCELLED": (_failed, "cancelled: slurm job {id} was cancelled (scancel)"),
    "TIMEOUT": (_failed, "timeout: the job reached its time limit of {limit} minutes and was stopped"),
    "DEADLINE": (_failed, "timeout: slurm job {id} reached its deadline"),
    "PREEMPTED": (_failed, "preempted: slurm job {id} was stopped for another job"),
    "NODE_FAIL": (_failed, "node failure: the node running slurm job {id} failed"),
    "BOOT_FAIL": (_failed, "node failure: the node for slurm job {id} failed to boot"),
    "OUT_OF_MEMORY": (_failed, "out of memory: slurm killed job {id} for exceeding its memory"),
    "REVOKED": (_failed, "revoked: slurm job {id} was started on another federated cluster"),
}
STOP_REASONS = frozenset(
    {"CANCELLED", "TIMEOUT", "DEADLINE", "PREEMPTED", "NODE_FAIL", "BOOT_FAIL", "OUT_OF_MEMORY"}
)

#: stderr of a Slurm command when slurmctld (or munge) does not answer
UNAVAILABLE = re.compile(
    r"Unable to contact slurm controller|Socket timed out|Connection refused|Connection timed out|"
    r"Zero Bytes were transmitted|Communication connection failure|Unable to establish|"
    r"munge|authentication|Could not establish a configuration source|is DOWN",
    re.IGNORECASE,
)
UNKNOWN_JOB = re.compile(r"Invalid job id specified")


def parse_job_id(answer: str) -> str | None:
    """``sbatch --parsable`` prints ``ID`` or ``ID;CLUSTER``."""
    first = answer.strip().splitlines()[0] if answer.strip() else ""
    job_id = first.split(";", 1)[0].strip()
    return job_id if job_id.isdigit() else None


def parse_state(answer: str) -> QueueState | None:
    """``squeue -h -o %T|%r``: ``RUNNING|None``; nothing when Slurm has forgotten the job."""
    line = answer.strip().splitlines()[0] if answer.strip() else ""
    if not line:
        return None
    state, _, reason = line.partition("|")
    return QueueState(state.strip(), "" if reason.strip() in ("None", "(null)") else reason.strip())


def parse_states(answer: str) -> dict[str, QueueState]:
    """``squeue -h -o %i|%T|%r`` for many jobs: ``12|RUNNING|None`` a line."""
    states: dict[str, QueueState] = {}
    for line in answer.splitlines():
        job_id, _, rest = line.strip().partition("|")
        state = parse_state(rest)
        if job_id and state is not None:
            states[job_id] = state
    return states


def parse_accounting(answer: str) -> QueueState | None:
    """``sacct -n -P -X -o State,ExitCode,Reason``: ``CANCELLED by 0|0:15|None``."""
    line = answer.strip().splitlines()[0] if answer.strip() else ""
    if not line:
        return None
    fields = line.split("|")
    state = fields[0].split()[0] if fields[0].split() else ""
    reason = fields[2] if len(fields) > 2 and fields[2] not in ("None", "") else ""
    return QueueState(state, reason) if state else None


def parse_ping(answer: str) -> bool:
    """``scontrol ping``: ``Slurmctld(primary) at HOST is UP``."""
    return " is UP" in answer and " is DOWN" not in answer


def cpus(cpu_millicores: int | None) -> int | None:
    """Whole CPUs for Slurm: millicores rounded up (500 -> 1, 1500 -> 2)."""
    return math.ceil(cpu_millicores / 1000) if cpu_millicores else None


def directives(spec: JobSpec, files: JobFiles, options: BatchOptions, limit: int | None) -> list[str]:
    """``#SBATCH`` lines for one job; the site's own options come last, so they win."""
    res = spec.resources
    lines = [
        f"--job-name=pfcon-{spec.jid}",
        f"--output={files.node(jobfiles.OUTPUT)}",
        f"--chdir={files.node_path}",
        "--export=NONE",  # pfcon's own environment (its secrets) stays out of the job
        "--nodes=1",
        "--ntasks=1",
    ]
    if cpus(res.cpu_millicores):
        lines.append(f"--cpus-per-task={cpus(res.cpu_millicores)}")
    if res.memory_mib:
        lines.append(f"--mem={res.memory_mib}M")
    if res.gpus:
        lines.append(f"--gres=gpu:{res.gpus}")
    if limit:
        lines.append(f"--time={limit}")
    if options.queue:
        lines.append(f"--partition={options.queue}")
    lines += options.extra_options
    return [f"#SBATCH {line}" for line in lines]


SLURM = Scheduler(
    name="slurm",
    template=TEMPLATE,
    submit=("sbatch", "--parsable"),
    cancel=("scancel",),
    query=("squeue", "--noheader", "--states=all", "--format=%T|%r", "--jobs"),
    ping=("scontrol", "ping"),
    version=("sinfo", "--version"),
    parse_job_id=parse_job_id,
    parse_state=parse_state,
    parse_ping=parse_ping,
    states=STATES,
    stop_reasons=STOP_REASONS,
    unavailable=UNAVAILABLE,
    unknown_job=UNKNOWN_JOB,
    directives=directives,
    accounting=(
        "sacct",
        "--noheader",
        "--parsable2",
        "--allocations",
        "--format=State,ExitCode,Reason",
        "--jobs",
    ),
    parse_accounting=parse_accounting,
    query_many=("squeue", "--noheader", "--states=all", "--format=%i|%T|%r", "--jobs"),
    parse_states=parse_states,
)


def slurm_template(settings: Settings) -> ScriptTemplate:
    """The site's template (SLURM_SCRIPT_TEMPLATE) or the one pfcon ships."""
    path = settings.slurm.script_template
    return (
        ScriptTemplate.from_file(path, "SLURM_SCRIPT_TEMPLATE") if path else ScriptTemplate.packaged(TEMPLATE)
    )


def build_slurm_backend(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> tuple[BatchBackend, HostPaths]:
    """The Slurm backend for these settings; storeBase is a host folder the nodes share."""
    if settings.compute_volume_type != "host":
        raise SettingsError(
            "COMPUTE_VOLUME_TYPE", "CONTAINER_ENV=slurm needs host: storeBase is a folder the nodes share"
        )
    node_root = settings.storebase or ""
    if not jobfiles.is_node_path_safe(node_root):
        raise SettingsError(
            "STOREBASE", f"{node_root!r}: Slurm needs a path without blanks, quotes, '%', ':' or ','"
        )
    slurm = settings.slurm
    runtime = RUNTIMES[slurm.runtime]
    if settings.container_user and not runtime.user_flag:
        raise SettingsError("CONTAINER_USER", f"{runtime.name} runs jobs as the submitting user")
    if slurm.check_images and runtime.image_check and shutil.which(runtime.binary) is None:
        raise SettingsError(
            "SLURM_CHECK_IMAGES",
            f"{runtime.binary} is not on pfcon's host to check images; install it or set "
            "SLURM_CHECK_IMAGES=no",
        )
    options = BatchOptions(
        time_limit_minutes=slurm.timelimit_minutes,
        queue=slurm.partition,
        extra_options=slurm.sbatch_options,
        accounting=slurm.accounting,
        check_images=slurm.check_images,
        command_timeout=float(slurm.command_timeout_seconds),
    )
    backend = BatchBackend(
        SLURM, runtime, slurm_template(settings), options, settings.storebase_mount, node_root, environ
    )
    return backend, HostPaths(node_root)


def example_script(settings: Settings) -> str:
    """The script a sample job would submit under these settings (``pfcon slurm-script --example``)."""
    slurm = settings.slurm
    options = BatchOptions(slurm.timelimit_minutes, slurm.partition, slurm.sbatch_options)
    runtime = RUNTIMES[slurm.runtime]
    root = settings.storebase or "/storeBase"
    backend = BatchBackend(SLURM, runtime, slurm_template(settings), options, Path(root), root)
    spec = JobSpec(
        jid="example-1",
        image="localhost/pfcon-busybox:1",
        command=("pl-copy", "--prefix", "copy-", "/share/incoming", "/share/outgoing"),
        env={"GREETING": "hello"},
        resources=Resources(number_of_workers=1, cpu_millicores=1500, memory_mib=512, gpus=0),
        mounts=(
            Mount(f"{root}/key-example-1/incoming", "/share/incoming", read_only=True),
            Mount(f"{root}/key-example-1/outgoing", "/share/outgoing", read_only=False),
        ),
        user=settings.container_user.pick() if settings.container_user and runtime.user_flag else None,
        labels=dict(settings.job_labels),
    )
    return backend.render(spec, JobFiles.of(Path(root), root, spec.jid, SLURM.name))
