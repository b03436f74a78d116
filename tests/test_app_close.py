"""``close_app`` stops every thread an app started, also while its engine does not answer.

An app left open keeps its scheduler, status feed, capacity reader, sweeper and pools for
the rest of the process: in a test session they poll engines later tests stopped, and in a
gunicorn worker on its way out they would outlive the app.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from pfcon.app import close_app, create_app
from pfcon.background import Closer, TrackedPool
from pfcon.settings import load_settings
from tests.api_helpers import login, submit, wait_started
from tests.conftest import remove_test_containers
from tests.helpers import TEST_LABEL, job_form, wait_for
from tests.live import free_port, live_pfcon

#: the threads each app starts at once, whatever its engine says
ALWAYS = {"pfcon-scheduler", "pfcon-upload-sweeper", "pfcon-op-progress"}


@pytest.fixture
def threads_before() -> Iterator[set[threading.Thread]]:
    yield set(threading.enumerate())


def started_since(before: set[threading.Thread]) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread not in before]


def names(threads: list[threading.Thread]) -> set[str]:
    return {thread.name for thread in threads}


#: an engine's own threads: its feed, and for a local engine the capacity reader, which
#: retries while the engine is away (a swarm's capacity is not read)
OWN = {"docker": {"pfcon-event-feed", "pfcon-capacity"}, "swarm": {"pfcon-poll-feed"}}


@pytest.mark.parametrize("container_env", list(OWN))
def test_an_app_whose_engine_does_not_answer_closes_at_once(
    threads_before: set[threading.Thread], storebase, monkeypatch, caplog, container_env: str
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")  # nobody listens there
    settings = {
        "APPLICATION_MODE": "development",
        "STOREBASE": str(storebase),
        "CONTAINER_ENV": container_env,
    }
    app = create_app(load_settings(settings))
    try:
        client = app.test_client()
        assert client.get("/api/v1/health/").status_code == 503  # the engine really is away
        running = started_since(threads_before)
        assert ALWAYS | OWN[container_env] <= names(running), names(running)
        assert any(name.startswith("pfcon-op_") for name in names(running))  # it ran the resume
        wait_for(lambda: "does not answer" in caplog.text, timeout=10)  # the feed keeps trying
    finally:
        began = time.monotonic()
        close_app(app)
        took = time.monotonic() - began
    assert started_since(threads_before) == []
    assert took < 5, f"closing took {took:.1f} s"
    caplog.clear()
    time.sleep(1.5)  # more than one feed retry
    assert "does not answer" not in caplog.text  # nothing polls the absent engine any more
    close_app(app)  # idempotent


@pytest.mark.integration
def test_an_app_with_a_running_job_closes_without_waiting_for_it(
    docker_client, threads_before: set[threading.Thread], make_settings, jid: str
) -> None:
    app = create_app(make_settings(JOB_LABELS=TEST_LABEL))
    try:
        client = app.test_client()
        auth = login(client)
        form = job_form(jid, entrypoint=["sh"], args=["-c", "sleep 60"], type="fs")
        assert submit(client, auth, form, {"a.txt": "x"}).status_code == 201
        wait_started(client, auth, jid)
        seen = names(started_since(threads_before))
        assert ALWAYS | {"pfcon-event-feed"} <= seen, seen
        assert any(name.startswith("pfcon-start_") for name in seen), seen  # the start pool ran
    finally:
        began = time.monotonic()
        close_app(app)
        took = time.monotonic() - began
        remove_test_containers(docker_client)
    assert started_since(threads_before) == []
    assert took < 5, f"closing took {took:.1f} s"


@pytest.mark.integration
def test_each_gunicorn_worker_closes_its_app_on_its_way_out(docker_client, storebase, tmp_path) -> None:
    log = tmp_path / "pfcon.log"
    with live_pfcon(storebase, log, {"PFCON_WORKERS": "2"}):
        wait_for(lambda: log.read_text().count("pfcon.app: pfcon ") == 2, timeout=30)  # both apps up
    text = log.read_text()
    assert text.count("pfcon.background: closed: upload sweeper, capacity reader") == 2, text


def test_a_pool_stuck_in_a_call_closes_within_its_bound(caplog) -> None:
    release = threading.Event()
    pool = TrackedPool(2, "pfcon-test-pool")
    pool.submit(release.wait)  # a start stuck in an engine that never answers
    finished = pool.submit(lambda: None)
    finished.result(timeout=5)
    began = time.monotonic()
    pool.close(timeout=0.5)
    assert 0.4 < time.monotonic() - began < 3
    assert "pfcon-test-pool: 1 task(s) still running after 0.5 s" in caplog.text
    release.set()
    pool.close()  # once the call returns, a second close joins the workers
    assert not [t for t in threading.enumerate() if t.name.startswith("pfcon-test-pool")]


def test_a_closer_runs_each_step_once_last_first_past_one_that_fails(caplog) -> None:
    ran: list[str] = []
    closer = Closer()
    closer.add("store", lambda: ran.append("store"))
    closer.add("broken", lambda: 1 / 0)
    closer.add("feed", lambda: ran.append("feed"))
    closer.close()
    closer.close()
    assert ran == ["feed", "store"]
    assert "closing broken failed" in caplog.text
