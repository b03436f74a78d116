"""Docker Engine backend (also speaks to Podman's Docker-compatible API).

One :class:`docker.DockerClient` serves the whole process. A job is one container named by
its jid and labelled as ours; the engine's container states map to pfcon's statuses through
:data:`STATE_TABLE`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shlex
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import _create_container_args
from docker.types import DeviceRequest
from docker.types import Mount as DockerMount

from pfcon.cache import ExpiringCache
from pfcon.compute.base import (
    Capabilities,
    ComputeBackend,
    EngineCapacity,
    EngineEvent,
    JobInfo,
    JobSpec,
    JobStatus,
    utc_now,
)
from pfcon.compute.dockerapi.container_state import (
    DOCKER_STATES,
    ENDING,
    Judgement,
    container_status,
    parse_time,
)
from pfcon.compute.dockerapi.names import NameSnapshot
from pfcon.errors import BackendUnavailable, InvalidJob, JobExists, JobNotFound

log = logging.getLogger(__name__)

JOB_LABEL = "org.chrisproject.pfcon.jid"
API_VERSION = "1.41"  # dockerd 20.10 and Podman 4; fixed so start-up needs no engine round trip
NEVER = "0001-01-01T00:00:00Z"
POOL_SIZE = 64
UNIX_SOCKET_URL = "http+docker://"  # docker-py's base URL for an engine on a local socket
MIN_MEMORY_MIB = 6  # dockerd refuses smaller memory limits
STOP_WAIT_SECONDS = 30  # a killed container is gone in well under a second
#: the device-request capability dockerd's GPU driver (NVIDIA's) answers
GPU = [["gpu"]]
MiB = 1024 * 1024
#: a job container's ``State`` while it holds its resources (created: being started)
HOLDING_STATES = frozenset(
    {"created", "running", "paused", "restarting", "configured", "initialized", "stopping"}
)
_CONTAINER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]+")
#: how dockerd and Podman say a name matched several container ID prefixes
_AMBIGUOUS = re.compile(r"multiple IDs found|more than one result", re.IGNORECASE)

#: container events that may change a job's state (``exec_*``, ``attach`` and the like do not)
#: (Podman's ``cleanup`` follows a job's exit: only then does its state say ``exited``, see
#: :data:`~pfcon.compute.dockerapi.container_state.PODMAN_STATES`; ``remove`` is its ``destroy``)
EVENTS = frozenset({"start", "die", "oom", "pause", "unpause", "destroy", "remove", "cleanup"})
#: beyond the window, how long the event stream may stay silent before it counts as hung
EVENT_READ_SLACK = 10.0

#: how long an image found on the engine is taken to be there without asking again
IMAGE_SEEN_TTL = 10.0

#: How long the engine's start time is reused before it is asked again (one call per poll of
#: a finished job would double the engine traffic of a busy status endpoint).
ENGINE_START_TTL = 2.0


def without_proxy_lookup(client: docker.DockerClient) -> docker.DockerClient:
    """``client``, told not to read the environment on each call when its engine is on a
    local socket: requests looks up proxies (and netrc) for every call, a fifth of
    docker-py's own CPU per inspect, for a socket no proxy serves. A client given to a
    backend is left as its caller made it."""
    if client.api.base_url.startswith(UNIX_SOCKET_URL):
        client.api.trust_env = False
    return client


class DockerApiBackend(ComputeBackend):
    """What every backend speaking the Docker Engine API shares (docker, podman, swarm): one
    client for the process, with a connection for each request and starter thread, and one
    translation of its exceptions into domain errors."""

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        self.client = client or without_proxy_lookup(
            docker.from_env(version=API_VERSION, timeout=60, max_pool_size=POOL_SIZE)
        )

    def _engine(
        self, action: str, jid: str = "", job_fault: bool = False, creates: bool = False
    ) -> contextlib.AbstractContextManager[None]:
        """Engine exceptions become domain errors (see :func:`engine_errors`)."""
        return engine_errors(self.name, self.client, action, jid, job_fault, creates)


class DockerBackend(DockerApiBackend):
    """Runs each job as one container on a Docker (or Podman) engine."""

    name = "docker"
    capabilities = Capabilities(max_workers=1, gpus=True, shm_size=True, labels=True)
    judgement = Judgement(DOCKER_STATES)
    event_stream = True
    #: what the engine's event stream is asked for: dockerd picks out pfcon's containers
    #: (a key-only label filter) and the events that may change a job's state, so each
    #: worker's feed parses only those, not every container event of the host
    event_filters: Mapping[str, list[str]] = {
        "type": ["container"],
        "label": [JOB_LABEL],
        "event": sorted(EVENTS),
    }

    def __init__(self, client: docker.DockerClient | None = None, engine_name: str = "docker") -> None:
        super().__init__(client)
        self.name = engine_name
        self._engine_start = ExpiringCache(ENGINE_START_TTL)
        self._images_seen: ExpiringCache[bool] = ExpiringCache(IMAGE_SEEN_TTL)
        self._names = NameSnapshot(self._container_names)

    # -- interface ------------------------------------------------------------------------
    def ping(self) -> str:
        with self._engine("answer a ping"):
            version = self.client.version()
        return f"{self.name} {version.get('Version', '?')}"

    def capacity(self) -> EngineCapacity:
        """NCPU, MemTotal and the GPUs of the engine's host.

        GPUs are the ``GenericResources`` the engine advertises (dockerd's
        ``node-generic-resources``, e.g. ``NVIDIA-GPU=GPU-0``): the Docker API has no other
        count of them, so a host whose dockerd does not advertise its GPUs reports none.
        """
        with self._engine("describe its host"):
            info = self.client.info()
        devices = advertised_gpus(info)
        return EngineCapacity(
            cpus=float(info.get("NCPU", 0)),
            memory_bytes=int(info.get("MemTotal", 0)),
            gpus=len(devices),
            gpu_devices=devices,
        )

    def validate(self, spec: JobSpec) -> None:
        super().validate(spec)
        if not _CONTAINER_NAME.fullmatch(spec.jid):
            raise InvalidJob(f"jid: {self.name} container names need at least 2 characters, got {spec.jid!r}")
        memory = spec.resources.memory_mib
        if memory is not None and memory < MIN_MEMORY_MIB:
            raise InvalidJob(f"memory_limit: {self.name} needs at least {MIN_MEMORY_MIB} MiB, got {memory}")
        self._require_image(spec.image)
        if self._names.free(spec.jid):
            return  # no engine call: see pfcon.compute.dockerapi.names
        with contextlib.suppress(JobNotFound), self._engine("look up the job", spec.jid):
            self._named(spec.jid)  # any container of that name blocks the jid
            raise JobExists(f"job {spec.jid!r} already exists on the {self.name} engine")

    def _require_image(self, image: str) -> None:
        """The image is on the engine: asked once per :data:`IMAGE_SEEN_TTL` per image.

        The profile of 8 concurrent submits showed this look-up as a third of a submit's
        engine time; an image removed within the window fails the job at its start, with the
        engine's words, instead of at its submit.
        """
        if self._images_seen.get(image):
            return
        with self._engine("look up the image"):
            try:
                self.client.api.inspect_image(image)
            except docker.errors.ImageNotFound:
                raise InvalidJob(
                    f"image: {image!r} is not present on the {self.name} engine; "
                    "pfcon does not pull images during a request, load or pull it first"
                ) from None
        self._images_seen.put(image, True)

    def submit(self, spec: JobSpec) -> JobInfo:
        """Two engine calls: create and start.

        docker-py's ``containers.create`` inspects the container it just created (to return
        a model object); the create answer's id is all a start needs, so the request body is
        built as docker-py builds it and sent without that inspect. Nor is the container
        inspected after its start (one Podman may fail for a job that already ended): the
        feed reads the state.
        """
        api = self.client.api
        request = create_container_args(self._create_args(spec), api._version)
        with self._engine("create the job container", spec.jid, creates=True):
            engine_id = api.create_container(**request)["Id"]
        try:
            with self._engine("start the job container", spec.jid, job_fault=True):
                api.start(engine_id)
        except (InvalidJob, BackendUnavailable):
            with contextlib.suppress(Exception):
                api.remove_container(engine_id, force=True)
            raise
        return JobInfo(
            spec.jid, spec.image, spec.cmd, JobStatus.started, "started", utc_now(), engine_id=engine_id
        )

    def info(self, jid: str) -> JobInfo:
        with self._engine("inspect the job", jid):
            return self._job_info(self._container(jid).attrs, jid)

    def logs(self, jid: str, tail: int) -> str:
        """One logs call, no inspect: callers ask only for jobs pfcon created (its store and
        the feed, which sees only containers labelled as ours, vouch for that)."""
        if tail <= 0:
            return ""
        api = self.client.api
        params = {"stdout": 1, "stderr": 1, "tail": tail}
        with self._engine("read the job's logs", jid):
            # docker-py's own logs() inspects the container first (to learn if it has a TTY;
            # pfcon's never do), which would double the cost of every read
            reply = api.get(f"{api.base_url}/v{API_VERSION}/containers/{jid}/logs", params=params)
            api._raise_for_status(reply)
        return demultiplex(reply.content).decode("utf-8", errors="replace")

    def snapshot(self, jid: str, tail: int) -> tuple[JobInfo, str]:
        """One inspect and one logs call (``info`` + ``logs`` would inspect twice)."""
        with self._engine("inspect the job", jid):
            container = self._container(jid)
            raw = container.logs(stdout=True, stderr=True, tail=tail) if tail > 0 else b""
        return self._job_info(container.attrs, jid), raw.decode("utf-8", errors="replace")

    def events(self, since: float, until: float) -> Iterator[EngineEvent]:
        """Our containers' events in one window of the engine's stream."""
        for event in self._events(since, until):
            found = engine_event(event)
            if found is not None:
                yield found

    def _events(self, since: float, until: float) -> Iterator[Mapping[str, Any]]:
        """Every container event the engine reports between ``since`` and ``until``.

        Read with a timeout of its own: docker-py reads event streams without one, and a
        hung engine would then hold the feed's thread for ever.
        """
        api = self.client.api
        params = {
            "since": f"{since:.6f}",
            "until": f"{until:.6f}",
            # the caller still picks out pfcon's containers and the events that matter
            "filters": json.dumps(self.event_filters),
        }
        with self._engine("follow the event stream"):
            reply = api.get(
                f"{api.base_url}/v{API_VERSION}/events",
                params=params,
                stream=True,
                timeout=(10, max(0.0, until - since) + EVENT_READ_SLACK),
            )
            try:
                if reply.status_code != 200:
                    raise BackendUnavailable(f"{self.name} refused events: HTTP {reply.status_code}")
                for line in reply.iter_lines():
                    event = _decoded(line)
                    if event is not None:
                        yield event
            finally:
                reply.close()

    def remove(self, jid: str) -> None:
        with self._engine("remove the job", jid):
            self._container(jid).remove(force=True)

    def stop(self, jid: str) -> None:
        with self._engine("stop the job", jid):
            container = self._container(jid)
            if container.status in ("created", "running", "paused", "restarting"):
                with contextlib.suppress(docker.errors.APIError):  # ended meanwhile: 409
                    container.kill()
                container.wait(timeout=STOP_WAIT_SECONDS)

    def close(self) -> None:
        self.client.close()

    # -- what admission control asks ---------------------------------------------------------
    def job_containers(self) -> dict[str, bool]:
        """Every pfcon job container, by jid: True while it holds resources, False once it ended."""
        with self._engine("list the job containers"):
            found = self.client.api.containers(all=True, filters={"label": JOB_LABEL})
        return {
            (entry.get("Labels") or {})[JOB_LABEL]: str(entry.get("State", "")).lower() in HOLDING_STATES
            for entry in found
            if (entry.get("Labels") or {}).get(JOB_LABEL)
        }

    # -- helpers --------------------------------------------------------------------------
    def _container_names(self) -> list[str]:
        """The name of every container on the engine (one listing; names carry a leading /)."""
        return [
            name.lstrip("/")
            for entry in self.client.api.containers(all=True)
            for name in entry.get("Names") or ()
        ]

    def _named(self, jid: str) -> Any:
        """The container named ``jid``. The engine also takes an ID prefix for a name, so a
        hex jid could find another container, or several (an engine error): neither is this job."""
        try:
            container = self.client.containers.get(jid)
        except docker.errors.NotFound:
            raise
        except docker.errors.APIError as exc:
            if not _AMBIGUOUS.search(exc.explanation or str(exc)):
                raise
            container = None
        if container is None or container.name != jid:
            raise JobNotFound(f"job {jid!r} is not known to the {self.name} engine")
        return container

    def _container(self, jid: str) -> Any:
        container = self._named(jid)
        if container.labels.get(JOB_LABEL) != jid:
            raise JobNotFound(f"container {jid!r} exists but was not created by pfcon")
        return container

    def _create_args(self, spec: JobSpec) -> dict[str, Any]:
        res = spec.resources
        args: dict[str, Any] = {
            "image": spec.image,
            "command": list(spec.command),
            "name": spec.jid,
            "environment": dict(spec.env),
            "labels": {**spec.labels, JOB_LABEL: spec.jid},
            "mounts": [
                DockerMount(target=m.target, source=m.source, type="bind", read_only=m.read_only)
                for m in spec.mounts
            ],
            "restart_policy": {"Name": "no"},
            "detach": True,
        }
        if spec.user:
            args["user"] = spec.user
        if spec.shm_size_mib:
            args["shm_size"] = f"{spec.shm_size_mib}m"
        if res.cpu_millicores:
            args["nano_cpus"] = res.cpu_millicores * 1_000_000
        if res.memory_mib:
            # a HARD limit (pfcon 5.3 set only a soft reservation), and no swap beyond it
            args["mem_limit"] = f"{res.memory_mib}m"
            args["memswap_limit"] = f"{res.memory_mib}m"
        if res.gpu_devices:  # the admission queue's choice: no two jobs on one GPU
            args["device_requests"] = [DeviceRequest(device_ids=list(res.gpu_devices), capabilities=GPU)]
        elif res.gpus:
            args["device_requests"] = [DeviceRequest(count=res.gpus, capabilities=GPU)]
        return args

    def engine_started_at(self) -> datetime | None:
        """When the engine last started, or ``None`` when it cannot tell.

        Without live-restore, dockerd removes and recreates its default ``bridge`` network
        at every start, so that network's creation time is the engine's start time. A job
        that ended around then was stopped by the engine, whatever its exit code says.
        An engine that is starting may not answer for its network yet: that is a 503 (nothing
        is judged, or recorded, until it does), not "cannot tell" (an engine without a
        ``bridge`` network, for good).
        """
        cached = self._engine_start.get("started")
        if cached is not None:
            return cached[0]
        try:
            started = parse_time(self.client.api.inspect_network("bridge").get("Created"))
        except docker.errors.NotFound:
            started = None
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            raise BackendUnavailable(
                f"the {self.name} engine does not answer for its start time yet ({type(exc).__name__})"
            ) from exc
        self._engine_start.put("started", (started,))
        return started

    def _job_info(self, attrs: Mapping[str, Any], jid: str) -> JobInfo:
        state = attrs.get("State") or {}
        config = attrs.get("Config") or {}
        ended = self.judgement.table.get(state.get("Status", "")) is JobStatus.finishedSuccessfully
        status, message = container_status(
            state,
            memory_limit=(attrs.get("HostConfig") or {}).get("Memory"),
            engine_started_at=self.engine_started_at() if ended else None,
            judgement=self.judgement,
            engine_name=self.name,
        )
        return JobInfo(
            jid=jid,
            image=config.get("Image", ""),
            cmd=shlex.join(config.get("Cmd") or []),
            status=status,
            message=message,
            timestamp=_timestamp(state, attrs.get("Created", "")),
            exit_code=state.get("ExitCode") if status.terminal else None,
            passing=message == ENDING,
            engine_id=attrs.get("Id"),
        )


def create_container_args(args: dict[str, Any], version: str) -> dict[str, Any]:
    """``containers.create``'s keywords as ``APIClient.create_container``'s: docker-py's own
    translation (host config, mounts, limits), so the create request is the one it sends."""
    return _create_container_args({**args, "version": version})


def demultiplex(data: bytes) -> bytes:
    """The payload of a non-TTY container's log stream: frames of an 8-byte header (stream
    type, 3 zero bytes, big-endian length) and that many bytes, stdout and stderr interleaved."""
    out, position = [], 0
    while position + 8 <= len(data):
        size = int.from_bytes(data[position + 4 : position + 8], "big")
        out.append(data[position + 8 : position + 8 + size])
        position += 8 + size
    return b"".join(out)


def _decoded(line: bytes) -> dict[str, Any] | None:
    """One event line as a mapping (None for a blank keep-alive or junk)."""
    try:
        event = json.loads(line) if line.strip() else None
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def event_jid(event: Mapping[str, Any]) -> str | None:
    """The jid label of an event that may change a job's state (None for other events or
    other containers)."""
    if (event.get("Action") or event.get("status")) not in EVENTS:
        return None
    attributes = (event.get("Actor") or {}).get("Attributes") or {}
    jid = attributes.get(JOB_LABEL)
    return jid if isinstance(jid, str) and jid else None


def engine_event(event: Mapping[str, Any]) -> EngineEvent | None:
    """What an event of one of our jobs says (None for other events or other containers)."""
    jid = event_jid(event)
    if jid is None:
        return None
    engine_id = event.get("id") or (event.get("Actor") or {}).get("ID")
    return EngineEvent(
        jid,
        str(event.get("Action") or event.get("status")),
        engine_id if isinstance(engine_id, str) and engine_id else None,
        event_time(event),
    )


def event_time(event: Mapping[str, Any]) -> str:
    """The event's time as RFC 3339 with nanoseconds, as the engine writes ``StartedAt``."""
    nanos = event.get("timeNano")
    if not isinstance(nanos, int) or nanos <= 0:
        seconds = event.get("time")
        if not isinstance(seconds, int | float) or seconds <= 0:
            return ""
        nanos = int(seconds * 1_000_000_000)
    whole, fraction = divmod(nanos, 1_000_000_000)
    return f"{datetime.fromtimestamp(whole, UTC):%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"


def advertised_gpus(info: Mapping[str, Any]) -> tuple[str, ...]:
    """The IDs of the GPUs an engine's ``info`` advertises as generic resources.

    A named resource (``NVIDIA-GPU=GPU-8c2f...``) is one GPU whose ID is its value, the UUID
    a device request accepts; a discrete one (``NVIDIA-GPU=2``) counts GPUs, named by their
    index as ``nvidia-smi`` numbers them. PFCON_GPU_DEVICES overrides the list.
    """
    named: list[str] = []
    counted = 0
    for resource in info.get("GenericResources") or []:
        for spec in resource.values():
            if isinstance(spec, Mapping) and "gpu" in str(spec.get("Kind", "")).lower():
                value = spec.get("Value")
                if isinstance(value, int):
                    counted += value
                else:
                    named.append(str(value))
    return tuple(dict.fromkeys([*named, *(str(index) for index in range(counted))]))


def _timestamp(state: Mapping[str, Any], created: str) -> str:
    for key in ("FinishedAt", "StartedAt"):
        value = state.get(key)
        if value and value != NEVER:
            return value
    return created


@contextlib.contextmanager
def engine_errors(
    engine: str,
    client: docker.DockerClient,
    action: str,
    jid: str = "",
    job_fault: bool = False,
    creates: bool = False,
) -> Iterator[None]:
    """Translate Docker API exceptions into domain errors; nothing docker-specific leaks.

    Shared by every backend that speaks the Docker API (docker, podman, swarm). With
    ``job_fault`` an engine refusal (any API error) is the job's problem, as when a start fails
    for a device the node does not have; unreachable engines stay 503. A conflict means a
    duplicate jid only when ``creates``; otherwise it is the engine refusing to read or remove
    a job it is already removing, which is as good as gone.
    """
    try:
        yield
    except docker.errors.ImageNotFound as exc:  # e.g. removed while its job waited in the queue
        raise InvalidJob(f"image: not present on the {engine} engine ({exc.explanation or exc})") from exc
    except docker.errors.NotFound as exc:
        raise JobNotFound(f"job {jid!r} is not known to the {engine} engine") from exc
    except docker.errors.APIError as exc:
        detail = exc.explanation or str(exc)
        if creates and (exc.status_code == 409 or "already in use" in detail):  # Podman answers 500
            raise JobExists(f"job {jid!r} already exists on the {engine} engine") from exc
        if exc.status_code == 409:
            raise JobNotFound(f"job {jid!r} is being removed by the {engine} engine: {detail}") from exc
        if job_fault or (exc.status_code is not None and 400 <= exc.status_code < 500):
            raise InvalidJob(f"{engine} refused to {action}: {detail}") from exc
        raise BackendUnavailable(f"{engine} engine failed to {action}: {detail}") from exc
    except (
        requests.exceptions.RequestException,
        docker.errors.DockerException,
        OSError,
    ) as exc:
        raise BackendUnavailable(
            f"the {engine} engine at {client.api.base_url} does not answer ({type(exc).__name__})"
        ) from exc
