"""Container runtimes a batch job can use on its node, as data: Docker, Podman, Apptainer.

A batch scheduler (Slurm) starts a shell script on a node; the script runs the job's container
with whatever runtime the site has. Each runtime is a table of command-line pieces, and
:func:`run_command` turns a :class:`~pfcon.compute.base.JobSpec` into one shell line from
it, so the same mounts, env, user, limits and labels reach the job on every runtime (where the
runtime can honour them at all: see :class:`Runtime`'s flags).

The lines run inside the batch script, where ``$container`` (the container's name, unique per
scheduler job), ``$child`` (the runtime's process) and ``$code`` (its exit status) are set.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from pfcon.compute.base import JobSpec

#: label naming the pfcon job on the container (the Docker backend's own label is not reused,
#: so a Docker backend on the same engine never mistakes these containers for its own)
JID_LABEL = "org.chrisproject.pfcon.batch.jid"


class Raw(str):
    """A shell fragment written unquoted, because it must expand on the node (``$container``)."""


def shell_join(words: Iterable[str]) -> str:
    """Quote every word for the shell except :class:`Raw` fragments."""
    return " ".join(word if isinstance(word, Raw) else shlex.quote(word) for word in words)


@dataclass(frozen=True)
class Runtime:
    """How one container runtime is driven from a batch script.

    ``None`` for a flag means the runtime cannot do it: the backend then refuses the setting or
    the job (see :meth:`unsupported`) instead of silently dropping it.
    """

    name: str
    run: tuple[str, ...]
    volume_flag: str = "--volume"
    read_only_suffix: str = ":ro"
    env_flag: str = "--env"
    user_flag: str | None = "--user"
    cpus_flag: str | None = "--cpus"
    memory_flags: tuple[str, ...] = ("--memory={mib}m", "--memory-swap={mib}m")
    shm_flag: str | None = "--shm-size={mib}m"
    label_flag: str | None = "--label"
    gpu_args: tuple[str, ...] = ()
    image_prefix: str = ""
    #: stops the container at once (scancel, time limit); the script's trap runs it
    stop: str = ":"
    #: prints "EXIT_CODE OOM_KILLED" of the finished container
    status: str = 'echo "$code" false'
    #: removes the container; runs on every exit of the script
    cleanup: str = ":"
    #: a local command (image name appended, after its ``--``) that fails when the image is absent
    image_check: tuple[str, ...] | None = None
    min_memory_mib: int = 0

    @property
    def binary(self) -> str:
        return self.run[0]

    def unsupported(self, spec: JobSpec) -> str | None:
        """Why this runtime cannot run ``spec`` as asked, or ``None``."""
        if spec.user and not self.user_flag:
            return f"{self.name} runs jobs as the submitting user; CONTAINER_USER cannot be honoured"
        if spec.shm_size_mib and not self.shm_flag:
            return f"{self.name} cannot set the size of /dev/shm"
        memory = spec.resources.memory_mib
        if memory is not None and memory < self.min_memory_mib:
            return f"memory_limit: {self.name} needs at least {self.min_memory_mib} MiB, got {memory}"
        return None


#: Podman under runc on cgroup v1 never sets OOMKilled: a SIGKILL (137) under a memory limit
#: is then reported as a "likely" out-of-memory kill (as pfcon.compute.dockerapi.container_state does)
_OOM_LIKELY = (
    ' | awk \'{ oom = $2; if (oom != "true" && $1 == 137 && $3 > 0) oom = "likely"; print $1, oom }\''
)


def _oci(binary: str, gpu_args: tuple[str, ...], oom_unreported: bool = False) -> Runtime:
    """Docker and Podman share their command line; the status prints "EXIT_CODE OOM"."""
    if oom_unreported:
        fields = "{{.State.ExitCode}} {{.State.OOMKilled}} {{.HostConfig.Memory}}"
        inspect = f"{binary} inspect --format '{fields}' \"$container\"{_OOM_LIKELY}"
    else:
        inspect = (
            f"{binary} inspect --format '{{{{.State.ExitCode}}}} {{{{.State.OOMKilled}}}}' \"$container\""
        )
    return Runtime(
        name=binary,
        # no --rm: the exit code and the OOM flag are read after the exit, then it is removed
        run=(binary, "run", "--name", Raw('"$container"'), "--pull=never", "--sig-proxy=false"),
        gpu_args=gpu_args,
        stop=f'{binary} kill "$container"',
        status=inspect,
        cleanup=f'{binary} rm -f "$container"',
        image_check=(binary, "image", "inspect", "--format", "{{.Id}}", "--"),
        min_memory_mib=6,
    )


def _apptainer(binary: str) -> Runtime:
    """Apptainer/Singularity: the job is a process of the batch script, limited by Slurm's cgroup."""
    return Runtime(
        name=binary,
        run=(binary, "exec", "--containall", "--cleanenv", "--pwd", "/"),
        volume_flag="--bind",
        user_flag=None,
        cpus_flag=None,
        memory_flags=(),
        shm_flag=None,
        label_flag=None,
        gpu_args=("--nv",),
        image_prefix="docker-daemon:",
        stop='kill -TERM "$child"',
    )


#: SLURM_RUNTIME -> runtime
RUNTIMES: dict[str, Runtime] = {
    "docker": _oci("docker", ("--gpus", Raw('"device=${CUDA_VISIBLE_DEVICES:-all}"'))),
    "podman": _oci(
        "podman", ("--device", Raw('"nvidia.com/gpu=${CUDA_VISIBLE_DEVICES:-all}"')), oom_unreported=True
    ),
    "apptainer": _apptainer("apptainer"),
    "singularity": _apptainer("singularity"),
}


def run_command(runtime: Runtime, spec: JobSpec, extra_labels: dict[str, str]) -> str:
    """The shell line that runs ``spec``'s container with ``runtime``."""
    words: list[str] = list(runtime.run)
    for mount in spec.mounts:
        suffix = runtime.read_only_suffix if mount.read_only else ""
        words += [runtime.volume_flag, f"{mount.source}:{mount.target}{suffix}"]
    for key, value in spec.env.items():
        words += [runtime.env_flag, f"{key}={value}"]
    if spec.user and runtime.user_flag:
        words += [runtime.user_flag, spec.user]
    res = spec.resources
    if res.cpu_millicores and runtime.cpus_flag:
        words += [runtime.cpus_flag, f"{res.cpu_millicores / 1000:g}"]
    if res.memory_mib:
        words += [flag.format(mib=res.memory_mib) for flag in runtime.memory_flags]
    if spec.shm_size_mib and runtime.shm_flag:
        words.append(runtime.shm_flag.format(mib=spec.shm_size_mib))
    if runtime.label_flag:
        for key, value in {**spec.labels, **extra_labels}.items():
            words += [runtime.label_flag, f"{key}={value}"]
    if res.gpus:
        words += runtime.gpu_args
    # "--" ends the options: whatever the image is, it is never read as one (the API checks
    # it too, see pfcon.imageref); docker, podman and apptainer's cobra CLIs all accept it
    return shell_join([*words, "--", runtime.image_prefix + spec.image, *spec.command])
