"""Fixtures: a real Docker engine (started when it is not running), apps on a tmp storeBase.

Integration tests (marked ``integration``) may skip on a laptop without an engine; under
``CI=true`` such a skip is turned into a failure.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
from flask import Flask

from pfcon.app import close_app, create_app
from pfcon.compute.dockerapi.docker import DockerBackend
from pfcon.compute.dockerapi.podman import PodmanBackend, podman_base_url
from pfcon.jobs import JobService
from pfcon.settings import Settings, load_settings
from tests.helpers import TEST_IMAGE, TEST_LABEL

ROOT = Path(__file__).resolve().parent.parent
# k8s_cluster: the real-cluster fixtures, one cluster session for every module
pytest_plugins = ["tests.ci_rule", "tests.store_fixtures", "pytester", "tests.k8s_cluster"]


def _engine_answers(client: docker.DockerClient) -> bool:
    try:
        client.ping()
        return True
    except Exception:
        return False


def _engine_client(client: docker.DockerClient, part: str) -> Iterator[docker.DockerClient]:
    """``client`` once its engine answers and has the test image (set up by ``part``'s script)."""
    if not _engine_answers(client) or not client.images.list(name=TEST_IMAGE):
        result = subprocess.run(
            ["bash", str(ROOT / "scripts/system-setup.sh"), part], capture_output=True, text=True
        )
        if result.returncode != 0 or not _engine_answers(client):
            pytest.skip(f"no {part} engine: {result.stderr.strip()[-500:]}")
    yield client
    remove_test_containers(client)
    client.close()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A real Docker engine with the test image; started by scripts/system-setup.sh if needed."""
    yield from _engine_client(docker.from_env(version="1.41"), "docker")


@pytest.fixture(scope="session")
def podman_client() -> Iterator[docker.DockerClient]:
    """A real Podman API service with the test image; started by scripts/system-setup.sh if needed."""
    yield from _engine_client(docker.DockerClient(base_url=podman_base_url(), version="1.41"), "podman")


@pytest.fixture(params=["docker", "podman"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """Each real engine in turn, for the tests every Docker-API engine must pass."""
    client = request.getfixturevalue(f"{request.param}_client")
    return Engine(request.param, client)


@dataclass(frozen=True)
class Engine:
    name: str
    client: docker.DockerClient

    def backend(self) -> DockerBackend:
        """A backend of this engine's kind over a client of its own (closed by the caller)."""
        return ENGINE_BACKENDS[self.name]()


ENGINE_BACKENDS: dict[str, type[DockerBackend]] = {"docker": DockerBackend, "podman": PodmanBackend}


@pytest.fixture
def storebase(tmp_path: Path) -> Path:
    path = tmp_path / "storeBase"
    path.mkdir()
    return path


@pytest.fixture
def make_settings(storebase: Path):
    def build(**env: Any):
        base = {"APPLICATION_MODE": "development", "STOREBASE": str(storebase), "JOB_LABELS": TEST_LABEL}
        base.update({k: str(v) for k, v in env.items()})
        return load_settings(base)

    return build


class Apps:
    """``create_app`` for tests, remembering each app built so that all can be closed."""

    def __init__(self) -> None:
        self.built: list[Flask] = []

    def __call__(self, settings: Settings, service: JobService | None = None) -> Flask:
        app = create_app(settings, service)
        self.built.append(app)
        return app

    def close(self) -> None:
        """Close every app built, the last first (idempotent)."""
        while self.built:
            close_app(self.built.pop())


@pytest.fixture
def build_app() -> Iterator[Apps]:
    """Build apps that are closed at teardown, so their scheduler, status feed and pools do
    not outlive the test, polling engines other tests stopped."""
    apps = Apps()
    yield apps
    apps.close()


@pytest.fixture
def make_app(docker_client: docker.DockerClient, make_settings, build_app: Apps):
    """Build an app on the real engine; jobs it leaves behind are removed afterwards."""
    yield lambda **env: build_app(make_settings(**env))
    build_app.close()  # no scheduler may start a job after its containers went
    remove_test_containers(docker_client)


def remove_test_containers(client: docker.DockerClient) -> None:
    for container in client.containers.list(all=True, filters={"label": TEST_LABEL}):
        container.remove(force=True)


@pytest.fixture
def jid() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def auth(client) -> dict[str, str]:
    answer = client.post("/api/v1/auth-token/", json={"pfcon_user": "pfcon", "pfcon_password": "pfcon1234"})
    assert answer.status_code == 200, answer.get_json()
    return {"Authorization": f"Bearer {answer.get_json()['token']}"}
