"""GPUs handed out by the admission queue on a real dockerd that serves GPU requests
(:class:`tests.private_engines.GpuDockerd`: dockerd's own NVIDIA device driver sets each
container's ``NVIDIA_VISIBLE_DEVICES``; only NVIDIA's prestart hook is a stand-in). Asked by
count, dockerd gives every job the host's first GPUs; the queue names them, so no two running
jobs share one, and its record keeps which job has which across a restart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from pfcon.settings import load_settings
from tests.api_helpers import login, submit, wait_started, wait_terminal
from tests.conftest import Apps
from tests.helpers import TEST_LABEL, EngineSampler, job_form, wait_for
from tests.private_engines import GpuDockerd, running

pytestmark = pytest.mark.integration
GPUS = set(GpuDockerd.GPUS)


@pytest.fixture(scope="module")
def gpu_dockerd(docker_client) -> Iterator[GpuDockerd]:
    yield from running(GpuDockerd())  # type: ignore[misc]


@pytest.fixture
def engine_client(gpu_dockerd: GpuDockerd) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=gpu_dockerd.url, version="1.41")
    yield client
    for container in client.containers.list(all=True, filters={"label": TEST_LABEL}):
        container.remove(force=True)
    client.close()


@pytest.fixture
def gpu_app(gpu_dockerd: GpuDockerd, engine_client, storebase: Path, monkeypatch, build_app: Apps):
    """An app on the GPU dockerd (a fresh one is a restart); the queue's GPUs are the engine's."""

    def build(**env: str) -> Any:
        monkeypatch.setenv("DOCKER_HOST", gpu_dockerd.url)
        base = {
            "APPLICATION_MODE": "development",
            "STOREBASE": str(storebase),
            "JOB_LABELS": TEST_LABEL,
            "CONTAINER_ENV": "docker",
            "PFCON_CAPACITY_CPUS": "16",
        }
        return build_app(load_settings({**base, **env}))

    yield build
    build_app.close()


def _gpu_job(seconds: float, gpus: int = 1) -> dict[str, Any]:
    """A job that says which GPUs the engine gave it, then holds them ``seconds``."""
    script = f'echo "gpus=$NVIDIA_VISIBLE_DEVICES"; sleep {seconds}'
    return job_form(
        f"gpu-{uuid.uuid4().hex[:8]}", entrypoint=["sh"], args=["-c", script], gpu_limit=str(gpus)
    )


def _submit(client, auth, form: dict[str, Any]) -> str:
    answer = submit(client, auth, form, {"a.txt": "1"})
    assert answer.status_code == 201, answer.get_json()
    return form["jid"]


def _gpus_seen(client, auth, jid: str) -> str:
    """What the job printed once it ended: the GPUs its container was given."""
    compute = wait_terminal(client, auth, jid)["compute"]
    assert compute["status"] == "finishedSuccessfully", compute
    return next(
        line.removeprefix("gpus=") for line in compute["logs"].splitlines() if line.startswith("gpus=")
    )


def _waits_for_a_gpu(client, auth, jid: str) -> bool:
    message = client.get(f"/api/v1/jobs/{jid}/", headers=auth).get_json()["compute"]["message"]
    return message.startswith("queued") and "needs 1 CPU, 200 MiB, 1 GPU" in message and "0 GPUs" in message


class GpuSampler(EngineSampler):
    """The GPUs each running job container was given, every 0.1 s."""

    def __init__(self, client: docker.DockerClient) -> None:
        super().__init__(client, interval=0.1)

    def sample(self, running: list[Any]) -> dict[str, list[str]]:
        return {c.name: _device_ids(c.attrs) for c in running}


def _device_ids(attrs: dict[str, Any]) -> list[str]:
    requests = (attrs.get("HostConfig") or {}).get("DeviceRequests") or []
    return [device for request in requests for device in request.get("DeviceIDs") or []]


def test_jobs_run_side_by_side_on_different_gpus_and_the_next_waits_for_one(gpu_app, engine_client) -> None:
    client = gpu_app().test_client()
    auth = login(client)
    queue = client.get("/api/v1/jobs/", headers=auth).get_json()["queue"]
    assert queue["capacity"]["gpus"] == 2 and queue["free_gpu_devices"] == list(GpuDockerd.GPUS)
    with GpuSampler(engine_client) as sampler:
        jids = [_submit(client, auth, _gpu_job(3)) for _ in range(3)]
        waiting = wait_for(
            lambda: next((j for j in jids if _waits_for_a_gpu(client, auth, j)), None), timeout=20
        )
        assert client.get("/api/v1/jobs/", headers=auth).get_json()["queue"]["free_gpu_devices"] == []
        seen = {jid: _gpus_seen(client, auth, jid) for jid in jids}
    for jid in jids:  # the history says which GPU each job had
        history = client.get(f"/api/v1/history/{jid}/", headers=auth).get_json()
        assert history["gpu_devices"] == [seen[jid]], history
    # each job was given one of the host's GPUs, and its container saw just that one
    assert set(seen.values()) <= GPUS and len({seen[j] for j in jids if j != waiting}) == 2, seen
    for sample in sampler.samples:
        given = [device for devices in sample.values() for device in devices]
        assert len(given) == len(set(given)) and len(sample) <= 2, sample
    assert max(len(sample) for sample in sampler.samples) == 2  # both GPUs were busy at once


def test_a_restart_knows_which_gpu_a_running_job_has(gpu_app, engine_client) -> None:
    client = gpu_app().test_client()
    auth = login(client)
    long = _submit(client, auth, _gpu_job(30))
    wait_started(client, auth, long)
    held = _device_ids(engine_client.containers.get(long).attrs)
    assert len(held) == 1 and held[0] in GPUS
    restarted = gpu_app().test_client()  # the store, not this process's memory, says who has what
    auth = login(restarted)
    first, second = (_submit(restarted, auth, _gpu_job(1)) for _ in range(2))
    assert (
        _gpus_seen(restarted, auth, first) == _gpus_seen(restarted, auth, second) == (GPUS - set(held)).pop()
    )
    assert restarted.delete(f"/api/v1/jobs/{long}/", headers=auth).status_code == 204


def test_more_gpus_than_the_host_has_is_a_400(gpu_app) -> None:
    client = gpu_app().test_client()
    auth = login(client)
    answer = submit(client, auth, _gpu_job(1, gpus=3), {"a.txt": "1"})
    assert answer.status_code == 400 and "gpu_limit" in answer.get_json()["message"], answer.get_json()


def test_without_the_queue_the_engine_gives_every_job_the_first_gpu(gpu_app) -> None:
    """Why the queue names GPUs: asked by count (as pfcon 5.3 asks, and pfcon with the queue
    off), dockerd gives each job the first of the host's GPUs, whatever runs on it already."""
    client = gpu_app(PFCON_QUEUE="off").test_client()
    auth = login(client)
    jids = [_submit(client, auth, _gpu_job(2)) for _ in range(2)]
    assert [_gpus_seen(client, auth, jid) for jid in jids] == ["0", "0"]
    assert client.get(f"/api/v1/history/{jids[0]}/", headers=auth).get_json()["gpu_devices"] == []
