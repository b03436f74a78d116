"""Podman through its Docker-compatible API: the Docker backend with Podman's socket and limits.

Podman 4 serves the Docker Engine API on a unix socket (``podman system service``), so the
same client code runs jobs on it. What differs is where the socket is and what Podman cannot
do through that API; those differences live here, not as branches in the Docker backend.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import docker

from pfcon.compute.base import Capabilities, EngineCapacity, EngineEvent
from pfcon.compute.dockerapi.container_state import PODMAN_STATES, Judgement
from pfcon.compute.dockerapi.docker import (
    API_VERSION,
    POOL_SIZE,
    DockerBackend,
    engine_event,
    without_proxy_lookup,
)

ROOTFUL_SOCKET = "/run/podman/podman.sock"
#: each window of Podman's event stream re-reads this much of the one before (see ``events``)
EVENT_OVERLAP_SECONDS = 3.0


def podman_base_url(environ: Mapping[str, str] | None = None, uid: int | None = None) -> str:
    """DOCKER_HOST when set; else the rootless user's socket when it exists; else the root socket."""
    environ = os.environ if environ is None else environ
    if environ.get("DOCKER_HOST"):
        return environ["DOCKER_HOST"]
    uid = os.getuid() if uid is None else uid
    if uid != 0:
        runtime_dir = environ.get("XDG_RUNTIME_DIR") or f"/run/user/{uid}"
        user_socket = Path(runtime_dir) / "podman" / "podman.sock"
        if user_socket.exists():
            return f"unix://{user_socket}"
    return f"unix://{ROOTFUL_SOCKET}"


class PodmanBackend(DockerBackend):
    """Runs each job as one Podman container.

    GPUs are refused: Podman's Docker-compatible API does not take device requests (GPUs on
    Podman go through CDI devices, which that API cannot ask for), and a silently ignored GPU
    request would run the job without one.
    """

    capabilities = Capabilities(max_workers=1, gpus=False, shm_size=True, labels=True)
    # runc on cgroup v1 under Podman 4 leaves OOMKilled false; a SIGKILL under a limit is one;
    # an exit is final once cleaned up (``cleanup`` event, state ``exited``)
    judgement = Judgement(PODMAN_STATES, sigkill_means_oom=True, uncleaned="stopped")
    #: by type only: Podman's compatible API matches no event to a key-only label filter
    event_filters: Mapping[str, list[str]] = {"type": ["container"]}

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        client = client or without_proxy_lookup(
            docker.DockerClient(
                base_url=podman_base_url(), version=API_VERSION, timeout=60, max_pool_size=POOL_SIZE
            )
        )
        super().__init__(client, engine_name="podman")
        self._passed: dict[tuple[Any, ...], float] = {}  # events already passed on, by their time

    def events(self, since: float, until: float) -> Iterator[EngineEvent]:
        """Our containers' events in one window, re-reading the end of the window before.

        Podman 4 serves events from its event log (a file by default): a request replays what
        the log holds from ``since`` on, then follows the file. An event written while the
        request opens is in neither part, and an exit is logged after the fact by the
        container's cleanup process; read back to back, windows lost a job's ``start`` or
        ``died`` under load (its state then stayed "started" for good). Each window therefore
        replays the last :data:`EVENT_OVERLAP_SECONDS` too, and what was already passed on is
        skipped, so the feed still inspects each change once.
        """
        horizon = since - EVENT_OVERLAP_SECONDS
        self._passed = {key: at for key, at in self._passed.items() if at >= horizon}
        for event in self._events(horizon, until):
            found = engine_event(event)
            if found is None:
                continue
            at = float(event.get("timeNano") or 0) / 1e9 or float(event.get("time") or 0)
            key = (event.get("timeNano"), event.get("time"), event.get("id"), event.get("Action"))
            if key in self._passed:
                continue
            self._passed[key] = at
            yield found

    def capacity(self) -> EngineCapacity:
        """No GPUs: jobs cannot ask Podman's Docker API for one (see the class docstring)."""
        return replace(super().capacity(), gpus=0)

    def engine_started_at(self) -> datetime | None:
        """Podman's containers are watched by conmon, not by the API service: restarting the
        service stops no job, so there is no engine start to judge an ending by."""
        return None
