"""The Swarm backend on a real single-node swarm: the contract, plus what only inspection shows."""

from __future__ import annotations

import re
from pathlib import Path

import docker
import pytest

from pfcon.compute.base import JobStatus, Mount, Resources
from pfcon.compute.dockerapi.docker import JOB_LABEL
from pfcon.compute.dockerapi.swarm import SwarmBackend, service_args
from pfcon.errors import BackendUnavailable, InvalidJob, JobExists, JobNotFound
from tests.contract import BackendContract, finished, limits_spec, make_spec
from tests.helpers import TEST_LABELS, wait_for
from tests.swarm_fixtures import (  # noqa: F401 - fixtures
    no_leftover_services_fixture,
    remove_test_services,
    swarm_client_fixture,
)

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture
def backend(swarm_client: docker.DockerClient):
    backend = SwarmBackend()
    yield backend
    backend.close()


class TestSwarmContract(BackendContract):
    @pytest.fixture
    def backend(self, swarm_client: docker.DockerClient):
        backend = SwarmBackend()
        yield backend
        backend.close()


def _task(client: docker.DockerClient, jid: str) -> dict:
    (task,) = client.api.tasks(filters={"service": jid})
    return task


def test_service_spec_has_limits_reservations_user_labels_mounts(
    backend, swarm_client, jid: str, tmp_path: Path
) -> None:
    spec = limits_spec(jid, tmp_path, "id -u; id -g; echo $HOME; df -k /dev/shm | tail -1")
    backend.validate(spec)
    backend.submit(spec)
    assert finished(backend, jid).status is JobStatus.finishedSuccessfully
    service = swarm_client.api.inspect_service(jid)["Spec"]
    template = service["TaskTemplate"]
    assert template["Resources"]["Limits"] == {"NanoCPUs": 1_500_000_000, "MemoryBytes": 96 * MiB}
    assert template["Resources"]["Reservations"] == {"NanoCPUs": 1_500_000_000, "MemoryBytes": 96 * MiB}
    assert template["RestartPolicy"]["Condition"] == "none"
    assert service["Mode"] == {"Replicated": {"Replicas": 1}}
    container = template["ContainerSpec"]
    assert container["User"] == "12345:23456"
    for labels in (service["Labels"], container["Labels"]):
        assert labels["site"] == "bch" and labels[JOB_LABEL] == jid
    mounts = {m["Target"]: m for m in container["Mounts"]}
    assert mounts["/share/incoming"]["Type"] == "bind" and mounts["/share/incoming"]["ReadOnly"] is True
    assert mounts["/share/outgoing"]["Type"] == "bind" and not mounts["/share/outgoing"].get("ReadOnly")
    assert mounts["/dev/shm"] == {
        "Type": "tmpfs",
        "Target": "/dev/shm",
        "TmpfsOptions": {"SizeBytes": 32 * MiB},
    }
    # what the job saw, and what the node enforced on its container
    uid, gid, home, shm = backend.logs(jid, 10).strip().splitlines()
    assert (uid, gid, home) == ("12345", "23456", "/tmp")
    assert shm.split()[1] == str(32 * 1024)  # /dev/shm size in KiB
    host = swarm_client.api.inspect_container(
        _task(swarm_client, jid)["Status"]["ContainerStatus"]["ContainerID"]
    )
    assert host["HostConfig"]["NanoCpus"] == 1_500_000_000 and host["HostConfig"]["Memory"] == 96 * MiB
    assert host["HostConfig"]["MemorySwap"] == 2 * 96 * MiB  # services cannot set it (docs/backends.md)
    backend.remove(jid)


def test_ignored_limits_and_no_shm_size_set_none(backend, swarm_client, jid: str, tmp_path: Path) -> None:
    backend.submit(make_spec(jid, tmp_path, ("true",), resources=Resources(1, None, None, 0)))
    template = swarm_client.api.inspect_service(jid)["Spec"]["TaskTemplate"]
    resources = template.get("Resources") or {}
    assert not resources.get("Limits") and not resources.get("Reservations")
    targets = [m["Target"] for m in template["ContainerSpec"]["Mounts"]]
    assert targets == ["/share/incoming", "/share/outgoing"]
    backend.remove(jid)


def test_failing_job_gives_exit_code_and_task_error(backend, jid: str, tmp_path: Path) -> None:
    backend.submit(make_spec(jid, tmp_path, ("sh", "-c", "exit 3")))
    info = finished(backend, jid)
    assert info.status is JobStatus.finishedWithError
    assert info.message == "exited with code 3"  # its container ran here: judged as docker's are


def test_rejected_task_is_finished_with_error_with_the_swarm_reason(
    backend, jid: str, tmp_path: Path
) -> None:
    missing = tmp_path / "gone"
    spec = make_spec(
        jid, tmp_path, ("true",), mounts=(Mount(str(missing), "/share/incoming", read_only=True),)
    )
    backend.submit(spec)
    info = finished(backend, jid)
    assert info.status is JobStatus.finishedWithError
    assert info.message.startswith("rejected by the swarm: ")
    assert f"bind source path does not exist: {missing}" in info.message
    assert backend.logs(jid, 10) == ""  # no container ever ran


def test_job_waiting_for_resources_is_not_started_with_the_reason(
    backend, swarm_client, jid: str, tmp_path: Path
) -> None:
    """A GPU reservation no node can meet: the real swarm keeps the task pending and says why."""
    spec = make_spec(jid, tmp_path, ("true",), resources=Resources(1, 100, 16, 1))
    swarm_client.api.create_service(**service_args(spec, gpu_kind="NVIDIA-GPU"))
    reservations = swarm_client.api.inspect_service(jid)["Spec"]["TaskTemplate"]["Resources"]["Reservations"]
    assert reservations["GenericResources"] == [{"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 1}}]
    info = wait_for(
        lambda: (i := backend.info(jid)).message != "pending" and "insufficient" in i.message and i
    )
    assert info.status is JobStatus.notStarted
    assert info.message == "pending: no suitable node (insufficient resources on 1 node)"


def test_gpu_request_without_gpu_nodes_is_refused(backend, jid: str, tmp_path: Path) -> None:
    spec = make_spec(jid, tmp_path, ("true",), resources=Resources(1, 1000, 64, 1))
    with pytest.raises(InvalidJob, match="gpu_limit: no ready swarm node advertises 1 GPU"):
        backend.validate(spec)
    with pytest.raises(InvalidJob, match="gpu_limit"):
        backend.submit(spec)
    with pytest.raises(JobNotFound):
        backend.info(jid)


def test_reservation_bigger_than_any_node_is_refused(backend, jid: str, tmp_path: Path) -> None:
    cpus = make_spec(jid, tmp_path, ("true",), resources=Resources(1, 1_000_000, 64, 0))
    with pytest.raises(InvalidJob, match=r"cpu_limit: 1000000 millicores is more than any swarm node has"):
        backend.validate(cpus)
    memory = make_spec(jid, tmp_path, ("true",), resources=Resources(1, 100, 100_000_000, 0))
    with pytest.raises(InvalidJob, match="memory_limit: 100000000 MiB"):
        backend.validate(memory)


@pytest.mark.parametrize(
    "name", ["has.dot", "ends-", "x" * 64, "a" * 63, "under_score_", "chris_jid-12", "a", "a--b", "UPPER"]
)
def test_jid_rule_matches_what_the_swarm_accepts(backend, swarm_client, name: str, tmp_path: Path) -> None:
    """validate refuses exactly the names the real swarm refuses, before any data is staged."""
    try:
        swarm_client.api.create_service(
            docker.types.TaskTemplate(docker.types.ContainerSpec("localhost/pfcon-busybox:1", ["true"])),
            name=name,
            labels=TEST_LABELS,
        )
        engine_accepts = True
    except docker.errors.APIError as exc:
        assert exc.status_code == 400 and "name must be" in exc.explanation
        engine_accepts = False
    remove_test_services(swarm_client)
    spec = make_spec(name, tmp_path, ("true",))
    if engine_accepts:
        backend.validate(spec)
    else:
        with pytest.raises(InvalidJob, match="jid: swarm service names"):
            backend.validate(spec)


def test_foreign_service_is_not_ours_but_blocks_the_jid(
    backend, swarm_client, jid: str, tmp_path: Path
) -> None:
    swarm_client.services.create("localhost/pfcon-busybox:1", ["true"], name=jid, labels=TEST_LABELS)
    with pytest.raises(JobNotFound, match="not created by pfcon"):
        backend.info(jid)
    with pytest.raises(JobNotFound, match="not created by pfcon"):
        backend.remove(jid)
    with pytest.raises(JobExists):
        backend.validate(make_spec(jid, tmp_path, ("true",)))


def test_service_id_prefix_is_not_a_jid(backend, swarm_client, jid: str, tmp_path: Path) -> None:
    backend.submit(make_spec(jid, tmp_path, ("true",)))
    service_id = swarm_client.api.inspect_service(jid)["ID"]
    with pytest.raises(JobNotFound):
        backend.info(service_id[:12])


def test_ping_names_the_swarm(backend) -> None:
    assert re.fullmatch(r"swarm \d+\.\d+\S* \(nodes: 1\)", backend.ping())


def test_unreachable_engine_is_backend_unavailable(tmp_path: Path) -> None:
    client = docker.DockerClient(base_url="unix:///nonexistent/docker.sock", version="1.41")
    backend = SwarmBackend(client)
    spec = make_spec("j1", tmp_path, ("true",))
    calls = (
        backend.ping,
        lambda: backend.info("j1"),
        lambda: backend.logs("j1", 5),
        lambda: backend.submit(spec),
    )
    for call in calls:
        with pytest.raises(BackendUnavailable, match="does not answer"):
            call()
    with pytest.raises(BackendUnavailable):
        backend.validate(spec)


def test_task_shut_down_by_the_swarm_is_finished_with_error(
    backend, swarm_client, jid: str, tmp_path: Path
) -> None:
    """Scaling the service to 0 behind pfcon's back stops the running task: Swarm's 'shutdown'."""
    backend.submit(make_spec(jid, tmp_path, ("sleep", "30")))
    wait_for(lambda: backend.info(jid).status is JobStatus.started, timeout=20)
    swarm_client.services.get(jid).scale(0)
    info = finished(backend, jid, timeout=30)
    assert info.status is JobStatus.finishedWithError
    assert info.message.startswith("shut down by the swarm before it finished"), info.message
