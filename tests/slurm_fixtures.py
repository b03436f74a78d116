"""Fixtures for the Slurm backend: a real one-node cluster (scripts/setup.d/50-slurm.sh) and backends.

Import the fixtures into a test module to use them. Every Slurm job a test leaves behind is
cancelled through the backend, and its containers carry the session's test label, so cleanup
never touches another run's.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from pfcon.compute.batch.backend import BatchBackend
from pfcon.compute.batch.slurm import build_slurm_backend
from pfcon.errors import PfconError
from pfcon.settings import load_settings
from tests.conftest import ROOT
from tests.helpers import TEST_LABEL


def _controller_answers() -> bool:
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return " is UP" in ping.stdout


def _node_ready() -> bool:
    sinfo = subprocess.run(
        ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15, check=False
    )
    return any(state.startswith(("idle", "mixed", "alloc")) for state in sinfo.stdout.split())


@pytest.fixture(scope="session")
def slurm_cluster(docker_client: docker.DockerClient) -> None:
    """A real slurmctld + slurmd on this machine, started by the setup script when needed."""
    if not (_controller_answers() and _node_ready()):
        result = subprocess.run(
            ["bash", str(ROOT / "scripts/system-setup.sh"), "slurm"], capture_output=True, text=True
        )
        if result.returncode != 0 or not _controller_answers():
            pytest.skip(f"no Slurm cluster: {(result.stdout + result.stderr).strip()[-800:]}")


def slurm_backend(root: Path, **env: str) -> BatchBackend:
    """A Slurm backend whose storeBase (pfcon's and the node's view: one machine) is ``root``."""
    settings = load_settings(
        {"APPLICATION_MODE": "development", "STOREBASE": str(root), "CONTAINER_ENV": "slurm", **env}
    )
    backend, _ = build_slurm_backend(settings)
    return backend


def cancel_all(backend: BatchBackend) -> None:
    """Remove (scancel, then forget) every job the backend still holds under its storeBase."""
    for record in backend.pfcon_root.glob("key-*/slurm/job.json"):
        jid = record.parent.parent.name.removeprefix("key-")
        with contextlib.suppress(PfconError):
            backend.remove(jid)


def remove_slurm_containers(client: docker.DockerClient) -> None:
    """This session's job containers (a job's own script may be removing one at the same time)."""
    for container in client.containers.list(all=True, filters={"label": TEST_LABEL}):
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)


@pytest.fixture
def slurm_root(tmp_path: Path) -> Path:
    root = tmp_path / "storeBase"
    root.mkdir()
    return root


@pytest.fixture
def slurm(slurm_cluster, slurm_root: Path, docker_client: docker.DockerClient) -> Iterator[BatchBackend]:
    backend = slurm_backend(slurm_root)
    yield backend
    cancel_all(backend)
    remove_slurm_containers(docker_client)


@pytest.fixture
def slurm_on_podman(
    slurm_cluster, slurm_root: Path, podman_client: docker.DockerClient
) -> Iterator[BatchBackend]:
    """The same cluster with Podman running the containers on the node."""
    backend = slurm_backend(slurm_root, SLURM_RUNTIME="podman")
    yield backend
    cancel_all(backend)
    remove_slurm_containers(podman_client)
