"""Fixtures for tests on the real single-node swarm.

A module that imports ``swarm_client_fixture`` and ``no_leftover_services_fixture`` gets the
``swarm_client`` fixture and removes, after each test, the services this session made.
"""

from __future__ import annotations

import subprocess

import docker
import pytest

from tests.conftest import ROOT
from tests.helpers import TEST_LABEL


def is_manager(client: docker.DockerClient) -> bool:
    swarm = client.info().get("Swarm") or {}
    return swarm.get("LocalNodeState") == "active" and bool(swarm.get("ControlAvailable"))


def remove_test_services(client: docker.DockerClient) -> None:
    """Remove only the services this test session made (they carry its TEST_LABEL)."""
    for service in client.services.list(filters={"label": TEST_LABEL}):
        service.remove()


@pytest.fixture(name="swarm_client", scope="session")
def swarm_client_fixture(docker_client: docker.DockerClient) -> docker.DockerClient:
    """The shared dockerd as a swarm manager; scripts/setup.d/30-swarm.sh makes it one if needed."""
    if not is_manager(docker_client):
        result = subprocess.run(
            ["bash", str(ROOT / "scripts/system-setup.sh"), "swarm"], capture_output=True, text=True
        )
        if result.returncode != 0 or not is_manager(docker_client):
            pytest.skip(f"no swarm manager: {result.stderr.strip()[-500:]}")
    return docker_client


@pytest.fixture(name="no_leftover_services", autouse=True)
def no_leftover_services_fixture(swarm_client: docker.DockerClient):
    yield
    remove_test_services(swarm_client)
