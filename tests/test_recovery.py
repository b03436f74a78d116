"""Jobs accepted but not started when the service stopped are started when it comes back, once."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import requests

from pfcon.app import build_service, close_app
from pfcon.compute.base import JobSpec
from pfcon.compute.dockerapi.docker import DockerBackend
from pfcon.store import open_store
from pfcon.store.repository import QUEUED
from tests.api_helpers import login, submit, wait_terminal
from tests.helpers import TEST_LABEL, job_form, make_zip, wait_for
from tests.live import live_pfcon

pytestmark = pytest.mark.integration


def _accept_without_starting(make_app, jid: str) -> None:
    """A service that stops right after its 201, before its starter ran."""
    app = make_app()
    app.extensions["pfcon"].starter.pause()
    client = app.test_client()
    assert submit(client, login(client), job_form(jid), {"a.txt": "resumed"}).status_code == 201
    close_app(app)


def _output(client, auth, jid: str) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(client.get(f"/api/v1/jobs/{jid}/file/", headers=auth).data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_accepted_job_is_started_when_the_service_comes_back(make_app, jid: str) -> None:
    _accept_without_starting(make_app, jid)
    client = make_app().test_client()  # the restarted service
    auth = login(client)
    assert wait_terminal(client, auth, jid)["compute"]["status"] == "finishedSuccessfully"
    assert _output(client, auth, jid) == {"out-a.txt": b"resumed"}


def test_container_created_before_a_restart_counts_as_started(make_app, make_settings, jid: str) -> None:
    _accept_without_starting(make_app, jid)
    store = open_store(make_settings())
    row = store.live(jid)
    store.close()
    assert row is not None and row.state == QUEUED
    DockerBackend().submit(JobSpec.from_dict(row.spec))  # the crash came after the engine's create
    client = make_app().test_client()
    auth = login(client)
    compute = wait_terminal(client, auth, jid)["compute"]
    assert compute["status"] == "finishedSuccessfully", compute


class CountingDockerBackend(DockerBackend):
    """The real backend, counting the containers it is asked to create."""

    submits: list[str] = []

    def submit(self, spec):
        CountingDockerBackend.submits.append(spec.jid)
        return super().submit(spec)


def test_two_workers_resuming_start_a_job_once(make_app, make_settings, jid: str) -> None:
    _accept_without_starting(make_app, jid)
    services = [build_service(make_settings()) for _ in range(3)]  # three workers booting at once
    CountingDockerBackend.submits.clear()
    for service in services:
        service.starter.backend = CountingDockerBackend()
    try:
        for service in services:
            service.starter.resume()
        assert wait_for(lambda: services[0].status(jid).info.status.terminal, timeout=30)
    finally:
        for service in services:
            service.close()
    assert CountingDockerBackend.submits.count(jid) == 1


def test_running_jobs_survive_a_service_restart(
    docker_client, storebase: Path, tmp_path: Path, jid: str
) -> None:
    env = {"JOB_LABELS": TEST_LABEL}
    data = make_zip({"a.txt": "survives"})
    with live_pfcon(storebase, tmp_path / "first.log", env) as url:
        token = requests.post(
            url + "auth-token/", json={"pfcon_user": "pfcon", "pfcon_password": "pfcon1234"}
        )
        auth = {"Authorization": f"Bearer {token.json()['token']}"}
        form = {**job_form(jid, args=["--sleep", "12", "--prefix", "out-"])}
        answer = requests.post(url + "jobs/", data=form, files={"data_file": ("in.zip", data)}, headers=auth)
        assert answer.status_code == 201
        wait_for(
            lambda: requests.get(url + f"jobs/{jid}/", headers=auth).json()["compute"]["status"] == "started"
        )
    # the first service was stopped (SIGTERM to gunicorn) on leaving the block above
    with live_pfcon(storebase, tmp_path / "second.log", env) as url:
        status = requests.get(url + f"jobs/{jid}/", headers=auth).json()["compute"]
        assert status["status"] == "started", status  # never reported finished before it is
        final = wait_for(
            lambda: (
                (c := requests.get(url + f"jobs/{jid}/", headers=auth).json()["compute"])["status"]
                != "started"
                and c
            ),
            timeout=30,
        )
        assert final["status"] == "finishedSuccessfully" and "pl-copy: done" in final["logs"]
        zipped = requests.get(url + f"jobs/{jid}/file/", headers=auth).content
        with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
            assert archive.read("out-a.txt") == b"survives"
        assert requests.delete(url + f"jobs/{jid}/", headers=auth).status_code == 204
