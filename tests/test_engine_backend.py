"""The Docker-API engines, real dockerd and real Podman: the contract, plus what inspection shows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests

from pfcon.compute.base import Resources
from pfcon.compute.dockerapi.docker import DockerBackend, engine_errors
from pfcon.compute.dockerapi.podman import PodmanBackend
from pfcon.errors import BackendUnavailable, InvalidJob, JobExists, JobNotFound
from tests.conftest import Engine, remove_test_containers
from tests.contract import BackendContract, finished, limits_spec, make_spec
from tests.helpers import TEST_LABELS

pytestmark = pytest.mark.integration


def _backend_of(engine: Engine) -> Iterator[DockerBackend]:
    backend = engine.backend()
    yield backend
    backend.close()
    remove_test_containers(engine.client)


@pytest.fixture
def backend(engine: Engine):
    yield from _backend_of(engine)


class TestEngineContract(BackendContract):
    """The whole contract, once per engine."""

    @pytest.fixture
    def backend(self, engine: Engine):
        yield from _backend_of(engine)


def test_limits_user_labels_and_shm_are_applied(backend, engine: Engine, jid: str, tmp_path: Path) -> None:
    spec = limits_spec(jid, tmp_path, "id -u; id -g; echo $HOME")
    backend.submit(spec)
    finished(backend, jid)
    attrs = engine.client.containers.get(jid).attrs
    host = attrs["HostConfig"]
    assert host["NanoCpus"] == 1_500_000_000
    assert host["Memory"] == 96 * 1024 * 1024  # a hard limit, not a reservation
    assert host["MemorySwap"] == 96 * 1024 * 1024
    assert host["ShmSize"] == 32 * 1024 * 1024
    assert host["RestartPolicy"]["Name"] == "no"
    assert attrs["Config"]["User"] == "12345:23456"
    assert attrs["Config"]["Labels"]["site"] == "bch"
    assert attrs["Config"]["Labels"]["org.chrisproject.pfcon.jid"] == jid
    assert backend.logs(jid, 10).split() == ["12345", "23456", "/tmp"]
    binds = {m["Destination"]: m for m in attrs["Mounts"]}
    assert binds["/share/incoming"]["RW"] is False and binds["/share/outgoing"]["RW"] is True
    backend.remove(jid)


def test_ignored_limits_set_none(backend, engine: Engine, jid: str, tmp_path: Path) -> None:
    backend.submit(make_spec(jid, tmp_path, ("true",), resources=Resources(1, None, None, 0)))
    host = engine.client.containers.get(jid).attrs["HostConfig"]
    assert host["NanoCpus"] == 0 and host["Memory"] == 0
    backend.remove(jid)


def test_gpu_request_is_passed_to_docker(docker_client, jid: str, tmp_path: Path) -> None:
    """No GPU here: the engine refuses the device request, and the error says why."""
    backend = DockerBackend()
    spec = make_spec(jid, tmp_path, ("true",), resources=Resources(1, 1000, 64, 1))
    with pytest.raises(InvalidJob, match=r"(?i)gpu"):
        backend.submit(spec)
    with pytest.raises(JobNotFound, match="not known"):
        backend.info(jid)  # the failed container was cleaned up
    backend.close()


def test_gpu_request_is_refused_by_podman(podman_client, jid: str, tmp_path: Path) -> None:
    """Podman's Docker API ignores device requests; we refuse rather than run without a GPU."""
    backend = PodmanBackend()
    spec = make_spec(jid, tmp_path, ("true",), resources=Resources(1, 1000, 64, 1))
    with pytest.raises(InvalidJob, match="gpu_limit: podman cannot schedule GPUs"):
        backend.validate(spec)
    backend.close()


def test_foreign_container_is_not_ours(backend, engine: Engine, jid: str) -> None:
    engine.client.containers.create("localhost/pfcon-busybox:1", ["true"], name=jid, labels=TEST_LABELS)
    with pytest.raises(JobNotFound, match="not created by pfcon"):
        backend.info(jid)


def test_unreachable_engine_is_backend_unavailable() -> None:
    backend = DockerBackend(docker.DockerClient(base_url="unix:///nonexistent/docker.sock", version="1.41"))
    for call in (backend.ping, lambda: backend.info("j1"), lambda: backend.logs("j1", 5)):
        with pytest.raises(BackendUnavailable, match="does not answer"):
            call()


def _api_error(status: int, explanation: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError("engine said no", response=response, explanation=explanation)


@pytest.mark.parametrize(
    ("creates", "status", "explanation", "expected"),
    [
        (True, 409, "Conflict. The container name is already in use", JobExists),
        (True, 500, 'the container name "j" is already in use by 0a1b', JobExists),  # Podman
        (False, 409, "can not get logs from container which is dead or marked for removal", JobNotFound),
        (False, 400, "bad parameter", InvalidJob),
        (False, 500, "internal error", BackendUnavailable),
    ],
)
def test_engine_errors_map_to_domain_errors(creates: bool, status: int, explanation: str, expected) -> None:
    """A conflict is a duplicate jid only when creating; while reading it is a job being removed."""
    client = docker.DockerClient(base_url="unix:///nonexistent/docker.sock", version="1.41")
    with pytest.raises(expected), engine_errors("docker", client, "act", "j", creates=creates):
        raise _api_error(status, explanation)


def test_a_jid_that_is_an_id_prefix_is_no_other_container(
    backend, engine: Engine, jid: str, tmp_path: Path
) -> None:
    """The engine resolves an ID prefix where no name matches; found by the OpenAPI fuzz (a
    DELETE of jid ``0`` was a 503: "Multiple IDs found with provided prefix")."""
    for name in (jid, f"{jid}-b"):
        engine.client.containers.create("localhost/pfcon-busybox:1", ["true"], name=name, labels=TEST_LABELS)
    other = engine.client.containers.get(jid).id
    for prefix in (other[:12], other[:3], "0", "a"):  # one container's prefix, and likely several
        with pytest.raises(JobNotFound, match="not known"):
            backend.info(prefix)
        with pytest.raises(JobNotFound, match="not known"):
            backend.remove(prefix)
    backend.validate(make_spec(other[:12], tmp_path, ("true",)))  # the prefix blocks no job of that name
