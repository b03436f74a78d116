"""Faults on real engines: an engine that goes away and comes back, an engine restart under a
running job, and a start that meets a silent engine. They run on engines of the tests' own
(tests/private_engines.py), so stopping one disturbs nothing else."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from pfcon.app import create_app
from pfcon.records import ACCEPTED, JobRecords
from pfcon.settings import load_settings
from pfcon.storebase import StoreBase
from tests.api_helpers import login, submit, wait_started, wait_terminal
from tests.helpers import TEST_LABEL, job_form
from tests.private_engines import PrivateDockerd, PrivateEngine, PrivatePodmanService

pytestmark = pytest.mark.integration


def _running(engine: PrivateEngine) -> Iterator[PrivateEngine]:
    if why := engine.available():
        pytest.skip(why)
    engine.start()
    yield engine
    client = docker.DockerClient(base_url=engine.url, version="1.41")
    for container in client.containers.list(all=True, filters={"label": TEST_LABEL}):
        container.remove(force=True)
    client.close()
    engine.stop()


@pytest.fixture(scope="module")
def private_dockerd(docker_client) -> Iterator[PrivateEngine]:
    yield from _running(PrivateDockerd())


@pytest.fixture(scope="module")
def private_podman(podman_client) -> Iterator[PrivateEngine]:
    yield from _running(PrivatePodmanService())


@pytest.fixture(params=["dockerd", "podman"])
def private_engine(request: pytest.FixtureRequest) -> PrivateEngine:
    engine = request.getfixturevalue(f"private_{request.param}")
    if not _alive(engine):
        engine.start()  # a test that failed half-way left it stopped
    return engine


def _alive(engine: PrivateEngine) -> bool:
    return engine.process is not None and engine.process.poll() is None


@pytest.fixture
def app_on(storebase: Path, monkeypatch):
    """An app whose backend talks to the given private engine."""
    apps = []

    def build(engine: PrivateEngine, **env: str):
        monkeypatch.setenv("DOCKER_HOST", engine.url)
        container_env = "docker" if isinstance(engine, PrivateDockerd) else "podman"
        settings = {
            "APPLICATION_MODE": "development",
            "STOREBASE": str(storebase),
            "JOB_LABELS": TEST_LABEL,
            "CONTAINER_ENV": container_env,
            **env,
        }
        app = create_app(load_settings(settings))
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["pfcon"].close()


def _output(client, auth, jid: str) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(client.get(f"/api/v1/jobs/{jid}/file/", headers=auth).data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_engine_down_is_503_and_the_same_process_recovers(
    private_engine: PrivateEngine, app_on, storebase: Path, jid: str
) -> None:
    client = app_on(private_engine).test_client()
    auth = login(client)
    engine_name = "docker" if isinstance(private_engine, PrivateDockerd) else "podman"
    private_engine.stop()
    try:
        health = client.get("/api/v1/health/")
        assert health.status_code == 503, health.get_json()
        assert engine_name in health.get_json()["message"]
        refused = submit(client, auth, job_form(jid), {"a.txt": "never staged"})
        assert refused.status_code == 503 and engine_name in refused.get_json()["message"]
        assert sorted(p.name for p in storebase.iterdir()) == [".pfcon-uploads"]
        assert not any((storebase / ".pfcon-uploads").iterdir())
        status = client.get(f"/api/v1/jobs/{jid}/", headers=auth)
        assert status.status_code == 503 and engine_name in status.get_json()["message"]
    finally:
        private_engine.start()
    assert client.get("/api/v1/health/").status_code == 200
    assert submit(client, auth, job_form(jid), {"a.txt": "after the outage"}).status_code == 201
    assert wait_terminal(client, auth, jid)["compute"]["status"] == "finishedSuccessfully"
    assert _output(client, auth, jid) == {"out-a.txt": b"after the outage"}
    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204


def test_docker_restart_under_a_running_job_is_reported_as_the_engines_doing(
    private_dockerd: PrivateEngine, app_on, jid: str
) -> None:
    client = app_on(private_dockerd).test_client()
    auth = login(client)
    form = job_form(jid, args=["--sleep", "300", "--prefix", "out-"])
    assert submit(client, auth, form, {"a.txt": "x"}).status_code == 201
    wait_started(client, auth, jid)
    private_dockerd.restart()  # dockerd without live-restore stops its containers
    compute = wait_terminal(client, auth, jid, timeout=20)["compute"]
    assert compute["status"] == "finishedWithError", compute
    assert "stopped by the docker engine" in compute["message"], compute
    assert "pl-copy: copying" in compute["logs"]
    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204


def test_podman_service_restart_does_not_stop_a_running_job(
    private_podman: PrivateEngine, app_on, jid: str
) -> None:
    """Podman's containers are watched by conmon, not by its API service."""
    client = app_on(private_podman).test_client()
    auth = login(client)
    form = job_form(jid, args=["--sleep", "3", "--prefix", "out-"])
    assert submit(client, auth, form, {"a.txt": "kept"}).status_code == 201
    wait_started(client, auth, jid)
    private_podman.restart()
    assert wait_terminal(client, auth, jid)["compute"]["status"] == "finishedSuccessfully"
    assert _output(client, auth, jid) == {"out-a.txt": b"kept"}


def _accepted_not_started(app, jid: str, content: str):
    """A job accepted (201) whose start has not run yet; returns the client, auth and start."""
    starter = app.extensions["pfcon"].starter
    start = starter.start
    starter.start = lambda _jid: None
    client = app.test_client()
    auth = login(client)
    assert submit(client, auth, job_form(jid), {"a.txt": content}).status_code == 201
    starter.start = start
    return client, auth, start


def test_a_start_that_meets_a_silent_engine_waits_for_it(
    private_dockerd: PrivateEngine, app_on, storebase: Path, jid: str
) -> None:
    client, auth, start = _accepted_not_started(app_on(private_dockerd), jid, "waited")
    private_dockerd.stop()
    try:
        start(jid).result(timeout=30)
        record = JobRecords(StoreBase(storebase)).load(jid)
        assert record is not None and record.state == ACCEPTED
        assert record.message.startswith("waiting for the engine to answer")
    finally:
        private_dockerd.start()
    compute = wait_terminal(client, auth, jid, timeout=60)["compute"]
    assert compute["status"] == "finishedSuccessfully", compute
    assert _output(client, auth, jid) == {"out-a.txt": b"waited"}


def test_a_start_gives_up_after_the_retry_window_with_the_reason(
    private_dockerd: PrivateEngine, app_on, jid: str
) -> None:
    app = app_on(private_dockerd, PFCON_START_RETRY_SECONDS="0")
    client, auth, start = _accepted_not_started(app, jid, "x")
    private_dockerd.stop()
    try:
        start(jid).result(timeout=30)
    finally:
        private_dockerd.start()
    compute = client.get(f"/api/v1/jobs/{jid}/", headers=auth).get_json()["compute"]
    assert compute["status"] == "finishedWithError"
    assert compute["message"].startswith("failed to start: the engine did not answer"), compute
