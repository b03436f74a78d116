"""Docker Swarm backend: each job is a one-shot replicated service named by its jid.

The service has one replica and restart condition ``none``, so Swarm runs it once on a node
with room for its reservations and leaves the finished task in place for pfcon to read. The
service's newest task carries the job's state; task states map to pfcon's statuses through
:data:`STATE_TABLE`. It speaks the Docker API through the same SDK as the docker backend and
shares its error translation (:func:`pfcon.compute.dockerapi.docker.engine_errors`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import docker
import docker.errors
from docker.types import ContainerSpec, RestartPolicy, TaskTemplate
from docker.types import Mount as DockerMount
from docker.types import Resources as DockerResources

from pfcon.compute.base import Capabilities, JobInfo, JobSpec, JobStatus
from pfcon.compute.dockerapi.container_state import container_status
from pfcon.compute.dockerapi.docker import JOB_LABEL, MIN_MEMORY_MIB, DockerApiBackend
from pfcon.errors import BackendUnavailable, InvalidJob, JobExists, JobNotFound

MiB = 1024 * 1024
OOM_EXIT_CODE = 137  # 128 + SIGKILL, what the kernel's OOM killer leaves
SHM_TARGET = "/dev/shm"
#: Swarm's rule for service names (a DNS label, at most 63 characters)
_SERVICE_NAME = re.compile(r"[A-Za-z0-9](?:[-_]*[A-Za-z0-9]+)*")
_SERVICE_NAME_MAX = 63

#: a task's container ``State`` by container id; None when pfcon cannot see it (another node)
ContainerProbe = Callable[[str], "Mapping[str, Any] | None"]

#: Swarm task ``Status.State`` -> our status (swarmkit's TaskState, in lifecycle order).
STATE_TABLE: Mapping[str, JobStatus] = {
    "new": JobStatus.notStarted,
    "allocated": JobStatus.notStarted,
    "pending": JobStatus.notStarted,  # waiting for a node with room for its reservations
    "assigned": JobStatus.notStarted,
    "accepted": JobStatus.notStarted,
    "preparing": JobStatus.notStarted,  # the node pulls the image and creates the container
    "ready": JobStatus.notStarted,
    "starting": JobStatus.notStarted,
    "running": JobStatus.started,
    "complete": JobStatus.finishedSuccessfully,
    "failed": JobStatus.finishedWithError,  # non-zero exit
    "shutdown": JobStatus.finishedWithError,  # stopped by the swarm before it finished
    "rejected": JobStatus.finishedWithError,  # the node could not create it (mount, image, ...)
    "orphaned": JobStatus.finishedWithError,  # its node has been gone too long; outcome lost
    "remove": JobStatus.undefined,  # the service is being deleted
}


class SwarmBackend(DockerApiBackend):
    """Runs each job as a one-shot service on a Docker Swarm (pfcon's engine is a manager)."""

    name = "swarm"
    # SHM_SIZE is honoured as a tmpfs mount at /dev/shm (services have no ShmSize field).
    capabilities = Capabilities(max_workers=1, gpus=True, shm_size=True, labels=True)

    # -- interface ------------------------------------------------------------------------
    def ping(self) -> str:
        """The engine must answer and be a manager of an active swarm (else services fail)."""
        with self._engine("answer a ping"):
            info = self.client.info()
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            raise BackendUnavailable(
                f"the Docker engine at {self.client.api.base_url} is not a swarm manager "
                f"(swarm state {swarm.get('LocalNodeState') or 'unknown'!r}); see `docker swarm init`"
            )
        return f"{self.name} {info.get('ServerVersion', '?')} (nodes: {swarm.get('Nodes', '?')})"

    def validate(self, spec: JobSpec) -> None:
        super().validate(spec)
        if not _SERVICE_NAME.fullmatch(spec.jid) or len(spec.jid) > _SERVICE_NAME_MAX:
            raise InvalidJob(
                f"jid: swarm service names are letters, digits, '-' and '_' (no dots), end with a letter "
                f"or digit, and have at most {_SERVICE_NAME_MAX} characters; got {spec.jid!r}"
            )
        memory = spec.resources.memory_mib
        if memory is not None and memory < MIN_MEMORY_MIB:
            raise InvalidJob(f"memory_limit: {self.name} needs at least {MIN_MEMORY_MIB} MiB, got {memory}")
        with self._engine("list the swarm's nodes"):
            nodes = usable_nodes(self.client.api.nodes())
        check_fits(spec, nodes)
        self._require_image(spec.image)
        with contextlib.suppress(JobNotFound), self._engine("look up the job", spec.jid):
            self._named(spec.jid)  # any service of that name blocks the jid, ours or not
            raise JobExists(f"job {spec.jid!r} already exists on the {self.name} engine")

    def submit(self, spec: JobSpec) -> JobInfo:
        gpu_kind = None
        if spec.resources.gpus:
            with self._engine("list the swarm's nodes"):
                gpu_kind = check_fits(spec, usable_nodes(self.client.api.nodes()))
        with self._engine("create the job service", spec.jid, creates=True):
            created = self.client.api.create_service(**service_args(spec, gpu_kind))
        service_id = created.get("ID") if isinstance(created, dict) else None
        try:
            info = self.info(spec.jid)
        except (BackendUnavailable, JobNotFound):
            # the service exists (or existed): the next poll reads its state; not a failed start
            info = JobInfo(spec.jid, spec.image, spec.cmd, JobStatus.notStarted, "service created", "")
        return dataclasses.replace(info, engine_id=service_id)

    def info(self, jid: str) -> JobInfo:
        with self._engine("inspect the job", jid):
            attrs = self._inspect(jid)
            return self._job_info(attrs, self._tasks(attrs))

    def logs(self, jid: str, tail: int) -> str:
        with self._engine("read the job's logs", jid):
            return self._logs(self._inspect(jid), tail)

    def snapshot(self, jid: str, tail: int) -> tuple[JobInfo, str]:
        """One service inspect for both (``info`` + ``logs`` would inspect twice)."""
        with self._engine("inspect the job", jid):
            attrs = self._inspect(jid)
            return self._job_info(attrs, self._tasks(attrs)), self._logs(attrs, tail)

    def poll_all(self, jids: Iterable[str]) -> dict[str, JobInfo]:
        """Two queries for all live jobs: pfcon's services, then all their tasks."""
        wanted = set(jids)
        if not wanted:
            return {}
        with self._engine("list the job services"):
            services = [
                attrs
                for attrs in self.client.api.services(filters={"label": JOB_LABEL})
                if (attrs.get("Spec") or {}).get("Name") in wanted
                and (attrs["Spec"].get("Labels") or {}).get(JOB_LABEL) == attrs["Spec"]["Name"]
            ]
            if not services:
                return {}
            tasks = self.client.api.tasks(filters={"service": [attrs["ID"] for attrs in services]})
        by_service: dict[str, list[dict[str, Any]]] = {}
        for task in tasks:
            by_service.setdefault(task.get("ServiceID", ""), []).append(task)
        return {
            attrs["Spec"]["Name"]: self._job_info(attrs, by_service.get(attrs["ID"], []))
            for attrs in services
        }

    def remove(self, jid: str) -> None:
        with self._engine("remove the job", jid):
            self.client.api.remove_service(self._inspect(jid)["ID"])

    def stop(self, jid: str) -> None:
        """Scale the service to no replica: Swarm shuts its task down, the service stays."""
        with self._engine("stop the job", jid):
            self.client.services.get(self._inspect(jid)["ID"]).scale(0)

    def close(self) -> None:
        self.client.close()

    # -- helpers --------------------------------------------------------------------------
    def _named(self, jid: str) -> dict[str, Any]:
        """The service named ``jid`` (inspect also matches service ID prefixes: those are not)."""
        attrs = self.client.api.inspect_service(jid)
        if (attrs.get("Spec") or {}).get("Name") != jid:
            raise JobNotFound(f"job {jid!r} is not known to the {self.name} engine")
        return attrs

    def _inspect(self, jid: str) -> dict[str, Any]:
        """The service named ``jid`` made by pfcon."""
        attrs = self._named(jid)
        if (attrs["Spec"].get("Labels") or {}).get(JOB_LABEL) != jid:
            raise JobNotFound(f"service {jid!r} exists but was not created by pfcon")
        return attrs

    def _tasks(self, attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
        return self.client.api.tasks(filters={"service": attrs["ID"]})

    def _logs(self, attrs: Mapping[str, Any], tail: int) -> str:
        if tail <= 0:
            return ""
        raw = self.client.api.service_logs(attrs["ID"], stdout=True, stderr=True, tail=tail, follow=False)
        return b"".join(raw).decode("utf-8", errors="replace")

    def _require_image(self, image: str) -> None:
        """The image must be on this engine or in a registry it reaches (nodes pull it at start).

        pfcon never pulls during a request; unlike the docker backend, a registry image is
        accepted, because in a multi-node swarm the node that runs the job does the pulling.
        """
        with self._engine("look up the image"):
            try:
                self.client.api.inspect_image(image)
                return
            except docker.errors.ImageNotFound:
                pass
        try:
            with self._engine("look up the image in its registry", job_fault=True):
                self.client.api.inspect_distribution(image)
        except InvalidJob as exc:
            raise InvalidJob(
                f"image: {image!r} is not on the swarm manager's engine nor in a registry it can reach "
                f"({exc.message}); load or push it first"
            ) from None

    def _job_info(self, attrs: Mapping[str, Any], tasks: list[dict[str, Any]]) -> JobInfo:
        spec = attrs.get("Spec") or {}
        template = spec.get("TaskTemplate") or {}
        container = template.get("ContainerSpec") or {}
        memory = ((template.get("Resources") or {}).get("Limits") or {}).get("MemoryBytes")
        task = newest(tasks)
        status, message = task_status(task, memory, self._container_state)
        timestamp = (task or {}).get("Status", {}).get("Timestamp") or attrs.get("CreatedAt", "")
        return JobInfo(
            jid=spec.get("Name", ""),
            image=container.get("Image", ""),
            cmd=shlex.join(container.get("Command") or []),
            status=status,
            message=message,
            timestamp=timestamp,
        )

    def _container_state(self, container_id: str) -> Mapping[str, Any] | None:
        """The ``State`` of a task's container on pfcon's own engine; ``None`` if it is elsewhere."""
        try:
            return self.client.api.inspect_container(container_id).get("State")
        except docker.errors.DockerException:
            return None


def service_args(spec: JobSpec, gpu_kind: str | None = None) -> dict[str, Any]:
    """The ``create_service`` arguments for a job (a pure function, inspected by the tests)."""
    labels = {**spec.labels, JOB_LABEL: spec.jid}
    mounts = [
        DockerMount(target=m.target, source=m.source, type="bind", read_only=m.read_only) for m in spec.mounts
    ]
    if spec.shm_size_mib:
        mounts.append(
            DockerMount(target=SHM_TARGET, source=None, type="tmpfs", tmpfs_size=spec.shm_size_mib * MiB)
        )
    container = ContainerSpec(
        image=spec.image,
        command=list(spec.command),
        env=dict(spec.env),
        labels=labels,
        mounts=mounts,
        user=spec.user or None,
    )
    template = TaskTemplate(
        container_spec=container,
        resources=_resources(spec, gpu_kind),
        restart_policy=RestartPolicy(condition="none"),
    )
    return {"task_template": template, "name": spec.jid, "labels": labels}


def _resources(spec: JobSpec, gpu_kind: str | None) -> DockerResources:
    """Hard limits (pfcon 5.3 set none on Swarm) and equal reservations, so jobs wait for room."""
    res = spec.resources
    nano_cpus = res.cpu_millicores * 1_000_000 if res.cpu_millicores else None
    memory = res.memory_mib * MiB if res.memory_mib else None
    return DockerResources(
        cpu_limit=nano_cpus,
        mem_limit=memory,
        cpu_reservation=nano_cpus,
        mem_reservation=memory,
        generic_resources={gpu_kind: res.gpus} if gpu_kind and res.gpus else None,
    )


def newest(tasks: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The service's latest task (one, unless Swarm replaced a task of a lost node)."""
    return max(tasks, key=lambda task: task.get("CreatedAt", ""), default=None)


def task_status(
    task: Mapping[str, Any] | None,
    memory_limit: int | None = None,
    container_state: ContainerProbe = lambda container_id: None,
) -> tuple[JobStatus, str]:
    """Map a task to (status, message) through :data:`STATE_TABLE`, with the task's error.

    A failed task's container, when ``container_state`` can see it (it ran on pfcon's node),
    is judged as the docker backend judges its containers (out of memory, signals).
    """
    if task is None:
        return JobStatus.notStarted, "waiting for the swarm to create the job's task"
    status_block = task.get("Status") or {}
    state = str(status_block.get("State", ""))
    status = STATE_TABLE.get(state, JobStatus.undefined)
    error = status_block.get("Err") or ""
    detail = f": {error}" if error else ""
    if state not in STATE_TABLE:
        return status, f"unexpected swarm task state {state!r}{detail}"
    if state == "failed":
        return status, _failure_message(status_block, memory_limit, container_state)
    message = {
        "rejected": f"rejected by the swarm{detail}",
        "shutdown": f"shut down by the swarm before it finished{detail}",
        "orphaned": "orphaned: the node running it has been unreachable too long; its outcome is unknown",
        "complete": "complete",
        "remove": "being removed",
    }.get(state, f"{state}{detail or _note(status_block)}")
    return status, message


def _note(status_block: Mapping[str, Any]) -> str:
    note = status_block.get("Message") or ""
    return f" ({note})" if note and str(status_block.get("State")) not in note else ""


def _failure_message(
    status_block: Mapping[str, Any], memory_limit: int | None, container_state: ContainerProbe
) -> str:
    """A non-zero exit says its code (and whether memory killed it); other failures their error."""
    container = status_block.get("ContainerStatus") or {}
    code = container.get("ExitCode")
    error = status_block.get("Err") or "no reason given"
    if not code:  # the container never ran, e.g. "starting container failed: ..."
        return f"failed: {error}"
    state = container_state(container["ContainerID"]) if container.get("ContainerID") else None
    if state and state.get("Status") == "exited":
        return container_status(state, memory_limit)[1]
    if code == OOM_EXIT_CODE and memory_limit:
        return (
            f"exited with code {code} (killed; out of memory if it went over its {memory_limit // MiB} MiB "
            "limit, which pfcon cannot confirm for a container on another node)"
        )
    return f"exited with code {code} ({error})"


def usable_nodes(nodes: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Nodes that can take new tasks: ready and with availability ``active``."""
    return [
        node
        for node in nodes
        if (node.get("Status") or {}).get("State") == "ready"
        and (node.get("Spec") or {}).get("Availability") == "active"
    ]


def check_fits(spec: JobSpec, nodes: list[Mapping[str, Any]]) -> str | None:
    """Refuse a job no usable node could ever run; return the GPU generic-resource kind to use.

    A job whose reservations fit no node would wait in ``pending`` for ever, so say so now.
    GPUs are Swarm generic resources a node's dockerd advertises (``node-generic-resources``,
    kind e.g. ``NVIDIA-GPU``); any kind whose name contains "gpu" counts.
    """
    res = spec.resources
    if not nodes:
        raise InvalidJob("the swarm has no ready, active node to run the job")
    checks = (
        ("cpu_limit", res.cpu_millicores, "NanoCPUs", 1_000_000, "millicores"),
        ("memory_limit", res.memory_mib, "MemoryBytes", MiB, "MiB"),
    )
    for field_name, wanted, key, unit, unit_name in checks:
        largest = max(_resources_of(node).get(key, 0) // unit for node in nodes)
        if wanted and wanted > largest:
            raise InvalidJob(
                f"{field_name}: {wanted} {unit_name} is more than any swarm node has (largest: {largest})"
            )
    if not res.gpus:
        return None
    offers = {kind: count for node in nodes for kind, count in gpu_offers(node).items() if count >= res.gpus}
    if not offers:
        raise InvalidJob(
            f"gpu_limit: no ready swarm node advertises {res.gpus} GPU(s) as a generic resource "
            "(dockerd's node-generic-resources, e.g. NVIDIA-GPU=<uuid>)"
        )
    return max(offers, key=offers.__getitem__)


def gpu_offers(node: Mapping[str, Any]) -> dict[str, int]:
    """GPU-like generic resources a node advertises: kind -> count (discrete or named)."""
    offers: dict[str, int] = {}
    for resource in _resources_of(node).get("GenericResources") or []:
        discrete = resource.get("DiscreteResourceSpec")
        named = resource.get("NamedResourceSpec")
        if discrete and "gpu" in discrete.get("Kind", "").lower():
            offers[discrete["Kind"]] = offers.get(discrete["Kind"], 0) + int(discrete.get("Value", 0))
        elif named and "gpu" in named.get("Kind", "").lower():
            offers[named["Kind"]] = offers.get(named["Kind"], 0) + 1
    return offers


def _resources_of(node: Mapping[str, Any]) -> Mapping[str, Any]:
    return (node.get("Description") or {}).get("Resources") or {}
