"""Faults on real engines: an engine that goes away and comes back, an engine restart under a
running job, and a start that meets a silent engine. They run on engines of the tests' own
(tests/private_engines.py), so stopping one disturbs nothing else."""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pfcon.settings import load_settings
from pfcon.store.repository import QUEUED
from tests.api_helpers import login, submit, wait_started, wait_terminal
from tests.conftest import Apps
from tests.helpers import TEST_LABEL, job_form, wait_for
from tests.private_engines import PrivateDockerd, PrivateEngine, PrivatePodmanService, running

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def private_dockerd(docker_client) -> Iterator[PrivateEngine]:
    yield from running(PrivateDockerd())


@pytest.fixture(scope="module")
def private_podman(podman_client) -> Iterator[PrivateEngine]:
    yield from running(PrivatePodmanService())


@pytest.fixture(params=["dockerd", "podman"])
def private_engine(request: pytest.FixtureRequest) -> PrivateEngine:
    engine = request.getfixturevalue(f"private_{request.param}")
    if not _alive(engine):
        engine.start()  # a test that failed half-way left it stopped
    return engine


def _alive(engine: PrivateEngine) -> bool:
    return engine.process is not None and engine.process.poll() is None


@pytest.fixture
def app_on(storebase: Path, monkeypatch, build_app: Apps):
    """An app whose backend talks to the given private engine (closed at teardown)."""

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
        return build_app(load_settings(settings))

    return build


def app_store(client):
    return client.application.extensions["pfcon"].store


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
        assert sorted(p.name for p in storebase.iterdir()) == [".pfcon", ".pfcon-uploads"]
        assert not any((storebase / ".pfcon-uploads").iterdir())
        assert app_store(client).live(jid) is None  # nothing recorded either
        # the store answers for jobs it knows (or not) without the engine
        assert client.get(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 404
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
    """A job accepted (201) whose start has not run yet; returns the client, auth and starter."""
    starter = app.extensions["pfcon"].starter
    starter.pause()
    client = app.test_client()
    auth = login(client)
    assert submit(client, auth, job_form(jid), {"a.txt": content}).status_code == 201
    return client, auth, starter


def test_a_start_that_meets_a_silent_engine_waits_for_it(
    private_dockerd: PrivateEngine, app_on, storebase: Path, jid: str
) -> None:
    app = app_on(private_dockerd)
    client, auth, starter = _accepted_not_started(app, jid, "waited")
    private_dockerd.stop()
    try:
        assert starter.attempt(jid)
        row = app.extensions["pfcon"].store.live(jid)
        assert row is not None and row.state == QUEUED and row.retry_at is not None
        assert row.message.startswith("waiting for the engine to answer")
        assert (
            client.get(f"/api/v1/jobs/{jid}/", headers=auth).get_json()["compute"]["status"] == "notstarted"
        )
    finally:
        private_dockerd.start()
    starter.resume()
    compute = wait_terminal(client, auth, jid, timeout=60)["compute"]
    assert compute["status"] == "finishedSuccessfully", compute
    assert _output(client, auth, jid) == {"out-a.txt": b"waited"}


def test_a_start_gives_up_after_the_retry_window_with_the_reason(
    private_dockerd: PrivateEngine, app_on, jid: str
) -> None:
    app = app_on(private_dockerd, PFCON_START_RETRY_SECONDS="0")
    client, auth, starter = _accepted_not_started(app, jid, "x")
    private_dockerd.stop()
    try:
        assert starter.attempt(jid)
    finally:
        private_dockerd.start()
    compute = client.get(f"/api/v1/jobs/{jid}/", headers=auth).get_json()["compute"]
    assert compute["status"] == "finishedWithError"
    assert compute["message"].startswith("failed to start: the engine did not answer"), compute


def test_many_jobs_waiting_for_a_silent_engine_cost_no_thread_each(
    private_dockerd: PrivateEngine, app_on, jid: str
) -> None:
    """Issue 11 item 15: the waits are rows in the store, watched by one scheduler thread."""
    app = app_on(private_dockerd, PFCON_START_WORKERS="3")
    service = app.extensions["pfcon"]
    client, auth, starter = _accepted_not_started(app, f"{jid}-0", "x")
    jids = [f"{jid}-{n}" for n in range(1, 60)]
    for one in jids:
        assert submit(client, auth, job_form(one), {"a.txt": "x"}).status_code == 201
    threads_before = threading.active_count()
    private_dockerd.stop()
    try:
        starter.resume()
        waiting = wait_for(
            lambda: (
                rows
                if len(rows := [r for r in service.store.queued() if r.retry_at is not None]) == 60
                else None
            ),
            timeout=60,
        )
        assert all(r.message.startswith("waiting for the engine to answer") for r in waiting)
        assert threading.active_count() <= threads_before + 3 + 1  # the pool and the scheduler
    finally:
        private_dockerd.start()
    for one in [f"{jid}-0", *jids[:3]]:
        assert wait_terminal(client, auth, one, timeout=90)["compute"]["status"] == "finishedSuccessfully"
