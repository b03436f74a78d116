"""Swarm task states map to pfcon statuses through one table; node capacity decides what fits."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from pfcon.compute.base import JobStatus, Resources
from pfcon.compute.dockerapi.swarm import (
    STATE_TABLE,
    SwarmBackend,
    check_fits,
    gpu_offers,
    newest,
    task_status,
    usable_nodes,
)
from pfcon.errors import BackendUnavailable, InvalidJob
from tests.contract import make_spec

MiB = 1024 * 1024
#: swarmkit's TaskState values (api/types.proto), as the Docker API reports them
SWARMKIT_STATES = {
    "new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running",
    "complete", "shutdown", "failed", "rejected", "remove", "orphaned", "allocated",
}  # fmt: skip


def task(state: str, err: str = "", message: str = "", exit_code: int | None = None, cid: str = "c1") -> dict:
    status: dict = {"State": state, "Message": message, "Timestamp": "2026-01-01T00:00:00Z"}
    if err:
        status["Err"] = err
    if exit_code is not None:
        status["ContainerStatus"] = {"ContainerID": cid, "ExitCode": exit_code}
    return {"Status": status, "CreatedAt": "2026-01-01T00:00:00Z"}


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        *[(s, JobStatus.notStarted) for s in ("new", "allocated", "pending", "assigned", "accepted")],
        *[(s, JobStatus.notStarted) for s in ("preparing", "ready", "starting")],
        ("running", JobStatus.started),
        ("complete", JobStatus.finishedSuccessfully),
        *[(s, JobStatus.finishedWithError) for s in ("failed", "shutdown", "rejected", "orphaned")],
        ("remove", JobStatus.undefined),
        ("something-new", JobStatus.undefined),
        ("", JobStatus.undefined),
    ],
)
def test_state_table(state: str, expected: JobStatus) -> None:
    assert task_status(task(state, exit_code=1))[0] is expected


def test_state_table_covers_every_swarmkit_state() -> None:
    assert set(STATE_TABLE) == SWARMKIT_STATES


def test_no_task_yet_is_not_started() -> None:
    assert task_status(None) == (JobStatus.notStarted, "waiting for the swarm to create the job's task")


def test_messages_carry_the_task_error() -> None:
    pending = task(
        "pending", "no suitable node (insufficient resources on 1 node)", "pending task scheduling"
    )
    assert task_status(pending)[1] == "pending: no suitable node (insufficient resources on 1 node)"
    assert task_status(task("running", message="started"))[1] == "running (started)"
    rejected = task("rejected", 'invalid mount config for type "bind": bind source path does not exist: /x')
    assert task_status(rejected)[1] == (
        'rejected by the swarm: invalid mount config for type "bind": bind source path does not exist: /x'
    )
    assert "shut down by the swarm" in task_status(task("shutdown"))[1]
    assert "outcome is unknown" in task_status(task("orphaned"))[1]
    assert task_status(task("weird", "boom")) == (
        JobStatus.undefined,
        "unexpected swarm task state 'weird': boom",
    )


def test_failures() -> None:
    exited = task("failed", "task: non-zero exit (3)", exit_code=3)
    assert task_status(exited) == (
        JobStatus.finishedWithError,
        "exited with code 3 (task: non-zero exit (3))",
    )
    never_ran = task("failed", "starting container failed: no such device", exit_code=0)
    assert task_status(never_ran)[1] == "failed: starting container failed: no such device"


def test_exit_137_is_out_of_memory_only_when_the_container_says_so() -> None:
    """A container on pfcon's node is judged as the docker backend judges it; elsewhere, hedged."""
    killed = task("failed", "task: non-zero exit (137)", exit_code=137, cid="abc")
    seen: list[str] = []

    def probe(oom_killed: bool | None):
        state = None if oom_killed is None else {"Status": "exited", "ExitCode": 137, "OOMKilled": oom_killed}
        return lambda cid: seen.append(cid) or state

    status, message = task_status(killed, 16 * MiB, probe(True))
    assert status is JobStatus.finishedWithError and seen == ["abc"]
    assert message == "out of memory: the job was killed for exceeding its memory limit of 16 MiB"
    assert task_status(killed, 16 * MiB, probe(False))[1] == (
        "exited with code 137 (killed by SIGKILL, sent from outside the job)"
    )
    elsewhere = task_status(killed, 16 * MiB, probe(None))[1]
    assert elsewhere == (
        "exited with code 137 (killed; out of memory if it went over its 16 MiB limit, "
        "which pfcon cannot confirm for a container on another node)"
    )
    assert task_status(killed, None, probe(None))[1] == "exited with code 137 (task: non-zero exit (137))"


def test_newest_task_wins() -> None:
    old, new = task("rejected"), task("running")
    old["CreatedAt"], new["CreatedAt"] = "2026-01-01T00:00:00.1Z", "2026-01-01T00:00:05.2Z"
    assert newest([new, old]) is new and newest([]) is None


def node(cpus: int = 2, memory_mib: int = 4096, generic: list | None = None, **state) -> dict:
    """A node as GET /nodes documents it (only the fields we read)."""
    resources = {"NanoCPUs": cpus * 10**9, "MemoryBytes": memory_mib * MiB}
    if generic is not None:
        resources["GenericResources"] = generic
    return {
        "Spec": {"Availability": state.get("availability", "active")},
        "Status": {"State": state.get("status", "ready")},
        "Description": {"Resources": resources},
    }


def gpus(kind: str, count: int) -> dict:
    return {"DiscreteResourceSpec": {"Kind": kind, "Value": count}}


def test_gpu_offers_discrete_and_named() -> None:
    named = [{"NamedResourceSpec": {"Kind": "gpu", "Value": f"GPU-{i}"}} for i in range(3)]
    assert gpu_offers(
        node(generic=[gpus("NVIDIA-GPU", 2), {"DiscreteResourceSpec": {"Kind": "SSD", "Value": 1}}])
    ) == {"NVIDIA-GPU": 2}
    assert gpu_offers(node(generic=named)) == {"gpu": 3}
    assert gpu_offers(node()) == {}


def test_check_fits(tmp_path: Path) -> None:
    spec = make_spec("j1", tmp_path, ("true",), resources=Resources(1, 1500, 512, 2))
    assert check_fits(spec, [node(), node(generic=[gpus("NVIDIA-GPU", 4)])]) == "NVIDIA-GPU"
    with pytest.raises(InvalidJob, match="gpu_limit: no ready swarm node advertises 2 GPU"):
        check_fits(spec, [node(generic=[gpus("NVIDIA-GPU", 1)])])
    with pytest.raises(
        InvalidJob, match=r"cpu_limit: 1500 millicores is more than any swarm node has \(largest: 1000\)"
    ):
        check_fits(spec, [node(cpus=1)])
    with pytest.raises(InvalidJob, match="memory_limit: 512 MiB"):
        check_fits(spec, [node(memory_mib=256)])
    with pytest.raises(InvalidJob, match="no ready, active node"):
        check_fits(spec, [])
    no_gpu = make_spec("j1", tmp_path, ("true",), resources=Resources(1, None, None, 0))
    assert check_fits(no_gpu, [node(cpus=1, memory_mib=8)]) is None


def test_only_ready_active_nodes_count() -> None:
    ready, drained, down = node(), node(availability="drain"), node(status="down")
    assert usable_nodes([ready, drained, down]) == [ready]


class _EngineInfo:
    """Just enough of a DockerClient for ping: what ``GET /info`` answers (no second dockerd here)."""

    api = SimpleNamespace(base_url="http+docker://localhost")

    def __init__(self, swarm: dict) -> None:
        self.swarm = swarm

    def info(self) -> dict:
        return {"ServerVersion": "20.10.24", "Swarm": self.swarm}


@pytest.mark.parametrize(
    "swarm",
    [
        {"LocalNodeState": "inactive", "ControlAvailable": False},
        {"LocalNodeState": "active", "ControlAvailable": False},  # a worker cannot create services
        {},
    ],
)
def test_ping_refuses_an_engine_that_is_not_a_swarm_manager(swarm: dict) -> None:
    with pytest.raises(BackendUnavailable, match="is not a swarm manager"):
        SwarmBackend(_EngineInfo(swarm)).ping()
    manager = {"LocalNodeState": "active", "ControlAvailable": True, "Nodes": 3}
    assert SwarmBackend(_EngineInfo(manager)).ping() == "swarm 20.10.24 (nodes: 3)"
