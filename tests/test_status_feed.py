"""Running jobs' status from the engine's event stream, on the real dockerd (and Podman).

Every HTTP call the backend's client makes to the engine is recorded with the thread that
made it, so the tests tell the request path (the test's own thread, through the Flask test
client) from the feed's thread: a status poll of a running job costs no inspect, its log
tail is read at most once a second, and when the event stream is cut the request path asks
the engine itself rather than answer from a feed that can no longer vouch for the state.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import docker
import pytest

from pfcon.compute.dockerapi.docker import JOB_LABEL
from pfcon.jobs import ROW_REUSE_SECONDS, JobService
from tests.api_helpers import login, submit, wait_started
from tests.conftest import remove_test_containers
from tests.helpers import TEST_IMAGE, TEST_LABEL, job_form, wait_for

pytestmark = pytest.mark.integration

#: the job prints a line, then waits for a file the test writes into its input folder
WAIT_FOR_STOP = "echo hello from the job; while [ ! -e /share/incoming/stop ]; do sleep 0.05; done; echo bye"


@dataclass
class EngineCalls:
    """Every request the backend's Docker client sends: (thread name, method, path)."""

    calls: list[tuple[str, str, str]] = field(default_factory=list)
    streams: list = field(default_factory=list)  # the event streams' responses, newest last
    lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self, client: docker.DockerClient) -> None:
        api = client.api
        send = api.send

        def counted(request, **kwargs):
            response = send(request, **kwargs)
            path = request.path_url.split("?")[0]
            with self.lock:
                self.calls.append((threading.current_thread().name, request.method, path))
                if path.endswith("/events"):
                    self.streams.append(response)
            return response

        api.send = counted

    def by(self, thread: str) -> list[tuple[str, str]]:
        with self.lock:
            return [(method, path) for name, method, path in self.calls if name == thread]

    def clear(self) -> None:
        with self.lock:
            self.calls.clear()


@pytest.fixture
def watched(make_app) -> Iterator[tuple[object, JobService, EngineCalls]]:
    app = make_app()
    service: JobService = app.extensions["pfcon"]
    calls = EngineCalls()
    calls.install(service.backend.client)
    yield app, service, calls
    service.feed.close()


@pytest.fixture(params=["docker", "podman"])
def watched_engine(request: pytest.FixtureRequest, make_app) -> Iterator[tuple]:
    """The same on each engine with an event stream: the app, its calls, the engine's client."""
    engine_client = request.getfixturevalue(f"{request.param}_client")
    app = make_app(CONTAINER_ENV=request.param)
    service: JobService = app.extensions["pfcon"]
    calls = EngineCalls()
    calls.install(service.backend.client)
    yield app, service, calls, engine_client
    service.feed.close()
    remove_test_containers(engine_client)


def start_waiting_job(client, auth, jid: str, service: JobService, start_timeout: float = 30) -> None:
    form = job_form(jid, entrypoint=["sh"], args=["-c", WAIT_FOR_STOP], type="fs")
    assert submit(client, auth, form, {"a": "1"}).status_code == 201
    wait_started(client, auth, jid, timeout=start_timeout)
    wait_for(lambda: service.feed.current(jid) is not None, timeout=30)


def stop_job(storebase: Path, jid: str) -> None:
    (storebase / f"key-{jid}" / "incoming" / "stop").write_text("")


def poll(client, auth, jid: str) -> dict:
    answer = client.get(f"/api/v1/jobs/{jid}/", headers=auth)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["compute"]


def inspects(calls: EngineCalls) -> list[tuple[str, str]]:
    return [call for call in calls.by(threading.current_thread().name) if call[1].endswith("/json")]


def finished_at(docker_client: docker.DockerClient, jid: str) -> float:
    state = docker_client.api.inspect_container(jid)["State"]
    return datetime.fromisoformat(state["FinishedAt"]).timestamp()


def test_running_status_costs_no_engine_call_and_a_change_shows_within_a_second(
    watched_engine, storebase: Path, jid: str
) -> None:
    app, service, calls, engine_client = watched_engine
    client = app.test_client()
    auth = login(client)
    start_waiting_job(client, auth, jid, service)
    me = threading.current_thread().name

    calls.clear()
    began = time.monotonic()
    answers = [poll(client, auth, jid) for _ in range(60)]
    elapsed = time.monotonic() - began
    assert {answer["status"] for answer in answers} == {"started"}
    assert all("hello from the job" in answer["logs"] for answer in answers)
    assert inspects(calls) == [], "a status poll of a running job asked the engine for its state"
    log_reads = [call for call in calls.by(me) if call[1].endswith("/logs")]
    assert len(log_reads) <= math.ceil(elapsed / service.tails.refresh) + 1, (len(log_reads), elapsed)

    stop_job(storebase, jid)
    seen = wait_for(lambda: (time.time(), poll(client, auth, jid)), interval=0.02, timeout=30)
    while seen[1]["status"] == "started":
        seen = (time.time(), poll(client, auth, jid))
    assert seen[1]["status"] == "finishedSuccessfully", seen
    assert "bye" in seen[1]["logs"]  # the final tail, not one read a second before
    delay = seen[0] - finished_at(engine_client, jid)
    assert delay < 1.0, f"the end of the job showed {delay:.2f} s after it happened"
    assert inspects(calls) == [], "the end of the job was read on the request path"
    row = service.store.live(jid)
    assert row is not None and row.status == "finishedSuccessfully" and "bye" in (row.logs or "")


def job_calls(calls: EngineCalls, thread: str, jid: str) -> list[tuple[str, str]]:
    """The calls ``thread`` made about the job's container (inspects, log reads)."""
    return [call for call in calls.by(thread) if f"/containers/{jid}/" in call[1]]


def test_a_start_costs_the_feed_no_engine_call(watched_engine, jid: str) -> None:
    """The start event says what an inspect would (started, this run's container, when): the
    feed vouches for the job from it, without asking the engine."""
    app, service, calls, engine_client = watched_engine
    client = app.test_client()
    start_waiting_job(client, login(client), jid, service)
    assert job_calls(calls, service.feed._thread.name, jid) == []
    seen, state = service.feed.current(jid), engine_client.api.inspect_container(jid)
    assert seen is not None and seen.status.value == "started" and seen.message == "running"
    assert seen.engine_id == state["Id"] == service.store.live(jid).engine_id
    started = datetime.fromisoformat(state["State"]["StartedAt"]).timestamp()
    assert 0 <= datetime.fromisoformat(seen.timestamp).timestamp() - started < 1.0, (seen.timestamp, state)


def test_a_feed_that_does_not_record_an_end_leaves_it_to_the_record_never_to_a_stale_answer(
    watched_engine, storebase: Path, jid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every worker's feed sees every end; only the one of the process that started the job
    inspects it and reads its final tail. The others stop vouching for the job at once, and
    their status polls answer from the record or, until it is written, from the engine."""
    app, service, calls, _engine_client = watched_engine
    client = app.test_client()
    auth = login(client)
    start_waiting_job(client, auth, jid, service)
    monkeypatch.setattr("pfcon.compute.feed.process_owner", lambda: "another-worker:1")
    assert poll(client, auth, jid)["status"] == "started"

    stop_job(storebase, jid)
    wait_for(lambda: service.feed.current(jid) is None, interval=0.02, timeout=30)
    assert job_calls(calls, service.feed._thread.name, jid) == []
    assert service.store.live(jid).state == "started"  # the recording process did not run here
    answer = poll(client, auth, jid)  # this poll asks the engine and records the end
    assert answer["status"] == "finishedSuccessfully" and "bye" in answer["logs"], answer
    row = service.store.live(jid)
    assert row is not None and row.status == "finishedSuccessfully" and "bye" in (row.logs or "")


def test_log_tail_is_read_at_most_once_a_second_however_often_clients_poll(watched, jid: str) -> None:
    app, service, calls = watched
    client = app.test_client()
    auth = login(client)
    start_waiting_job(client, auth, jid, service)

    calls.clear()
    began = time.monotonic()
    polls = 0
    threads = []

    def hammer() -> None:
        nonlocal polls
        own = app.test_client()
        while time.monotonic() - began < 2.5:
            assert "hello from the job" in poll(own, auth, jid)["logs"]
            polls += 1

    for number in range(4):
        threads.append(threading.Thread(target=hammer, name=f"poller-{number}"))
        threads[-1].start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    with calls.lock:
        log_reads = [call for call in calls.calls if call[2].endswith("/logs")]
        pollers = [call for call in calls.calls if call[0].startswith("poller-")]
    assert polls > 20
    assert len(log_reads) <= math.ceil(elapsed) + 1, (len(log_reads), elapsed, polls)
    assert all(path.endswith("/logs") for _, _, path in pollers), pollers


def counted_store_reads(service: JobService, thread: str) -> list[str]:
    """The jids of every ``store.live`` call ``thread`` makes from now on."""
    reads: list[str] = []
    live = service.store.live

    def counted(jid: str, *args, **kwargs):
        if threading.current_thread().name == thread:
            reads.append(jid)
        return live(jid, *args, **kwargs)

    service.store.live = counted  # type: ignore[method-assign]
    return reads


def test_a_running_job_s_record_is_read_at_most_once_a_second_and_a_delete_shows_at_once(
    watched, make_app, jid: str
) -> None:
    """Polls of a running job reuse its record for ROW_REUSE_SECONDS while the feed vouches
    for the run; a delete through this service answers 404 at once, and a delete through
    another one (a second process on the same store and engine) as soon as this service's
    feed sees the container go (within a second, however long the record would be reused)."""
    app, service, _calls = watched
    client = app.test_client()
    auth = login(client)
    jids = [f"{jid}-here", f"{jid}-there", f"{jid}-there-unqueued"]
    start_waiting_job(client, auth, jids[0], service)
    reads = counted_store_reads(service, threading.current_thread().name)

    began, polls = time.monotonic(), 0
    while time.monotonic() - began < 2.2:
        assert poll(client, auth, jids[0])["status"] == "started"
        polls += 1
    assert 2 <= len(reads) <= math.ceil((time.monotonic() - began) / ROW_REUSE_SECONDS) + 1, (reads, polls)
    assert polls > 5 * len(reads)

    assert client.delete(f"/api/v1/jobs/{jids[0]}/", headers=auth).status_code == 204
    assert client.get(f"/api/v1/jobs/{jids[0]}/", headers=auth).status_code == 404

    for each in jids[1:]:  # two at a time: the queue's capacity is the engine's two CPUs
        start_waiting_job(client, auth, each, service)
    service.started_rows.max_age = 60.0  # so only the feed can tell this service of the delete
    # with the queue the other removes the container, then the record; without, the reverse
    for each, env in zip(jids[1:], ({}, {"PFCON_QUEUE": "false"}), strict=True):
        assert poll(client, auth, each)["status"] == "started"  # its record is now reused here
        other = make_app(**env).test_client()
        assert other.delete(f"/api/v1/jobs/{each}/", headers=auth).status_code == 204
        deleted = time.monotonic()
        wait_for(lambda: client.get(f"/api/v1/jobs/{each}/", headers=auth).status_code == 404, interval=0.01)  # noqa: B023
        assert time.monotonic() - deleted < 1.0, env


def test_a_finished_job_s_record_is_reused_until_another_process_deletes_it_or_reuses_its_jid(
    watched, make_app, storebase: Path, jid: str
) -> None:
    """Polls of a finished job read its record at most once a ROW_REUSE_SECONDS; a delete
    through another process answers 404 here at once, and a job submitted again under the
    jid there answers as itself, however long the record would be reused."""
    app, service, _calls = watched
    client = app.test_client()
    auth = login(client)
    start_waiting_job(client, auth, jid, service)
    stop_job(storebase, jid)
    wait_for(lambda: poll(client, auth, jid)["status"] == "finishedSuccessfully", interval=0.05, timeout=30)
    reads = counted_store_reads(service, threading.current_thread().name)

    began, polls = time.monotonic(), 0
    while time.monotonic() - began < 2.2:
        answer = poll(client, auth, jid)
        assert answer["status"] == "finishedSuccessfully" and "bye" in answer["logs"]
        polls += 1
    assert 2 <= len(reads) <= math.ceil((time.monotonic() - began) / ROW_REUSE_SECONDS) + 1, (reads, polls)
    assert polls > 5 * len(reads)

    service.finished_rows.max_age = 60.0  # so only the guard can tell this service of a change
    other = make_app().test_client()
    assert poll(client, auth, jid)["status"] == "finishedSuccessfully"  # reused from here on
    assert other.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204
    assert client.get(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 404

    start_waiting_job(client, auth, jid, service)
    stop_job(storebase, jid)
    wait_for(lambda: poll(client, auth, jid)["status"] == "finishedSuccessfully", interval=0.05, timeout=30)
    assert poll(client, auth, jid)["status"] == "finishedSuccessfully"  # reused again
    assert other.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204
    form = job_form(jid, entrypoint=["sh"], args=["-c", WAIT_FOR_STOP], type="fs")
    assert submit(other, auth, form, {"a": "1"}).status_code == 201
    assert poll(client, auth, jid)["status"] in ("notstarted", "started")  # the new job, not the old
    stop_job(storebase, jid)
    wait_for(lambda: poll(client, auth, jid)["status"] == "finishedSuccessfully", interval=0.05, timeout=30)


def test_a_cut_event_stream_falls_back_to_the_engine_never_to_a_stale_answer(
    watched, docker_client: docker.DockerClient, storebase: Path, jid: str
) -> None:
    app, service, calls = watched
    service.feed.retry_seconds = 4.0  # long enough to see the fallback at work
    client = app.test_client()
    auth = login(client)
    start_waiting_job(client, auth, jid, service)

    with calls.lock:
        stream = calls.streams[-1]
    stream.raw._connection.sock.shutdown(socket.SHUT_RDWR)  # the engine's connection drops
    wait_for(lambda: not service.feed.healthy, interval=0.02, timeout=5)
    calls.clear()
    stop_job(storebase, jid)
    wait_for(lambda: poll(client, auth, jid)["status"] == "finishedSuccessfully", interval=0.05, timeout=10)
    assert not service.feed.healthy, "the feed came back before the test saw the fallback"
    assert inspects(calls), "without a feed the request path must ask the engine"
    delay = time.time() - finished_at(docker_client, jid)
    assert delay < 1.5, delay

    wait_for(lambda: service.feed.healthy, timeout=15)  # it reconnects and reads every live job


def test_a_job_removed_behind_pfcon_s_back_reads_as_vanished(
    watched, docker_client: docker.DockerClient, jid: str
) -> None:
    app, service, _calls = watched
    client = app.test_client()
    auth = login(client)
    start_waiting_job(client, auth, jid, service)
    docker_client.containers.get(jid).remove(force=True)
    answer = wait_for(lambda: (lambda c: c if c["status"] != "started" else None)(poll(client, auth, jid)))
    assert answer["status"] in ("undefined", "finishedWithError"), answer


#: the events a short job's container gives, each passed on once (Podman logs its own names)
LIFE_EVENTS = {"docker": 3, "podman": 4}  # start, die, destroy | start, died, cleanup, remove


def test_back_to_back_windows_pass_on_every_event_of_a_job_once(engine, jid: str) -> None:
    """What the feed reads: windows of the event stream, one after the other, while short jobs
    start, end and are removed. Podman's event log loses events at a window's seam unless each
    window re-reads the end of the one before; each event must still be passed on once."""
    backend = engine.backend()
    names = [f"{jid}-{number}" for number in range(4)]

    def run_jobs() -> None:
        for name in names:
            labels = {JOB_LABEL: name, TEST_LABEL.split("=")[0]: TEST_LABEL.split("=")[1]}
            container = engine.client.containers.run(
                TEST_IMAGE, ["sh", "-c", "sleep 0.4"], name=name, labels=labels, detach=True
            )
            container.wait(timeout=30)
            time.sleep(0.3)
            container.remove(force=True)

    seen: list[str] = []
    runner = threading.Thread(target=run_jobs)
    since = time.time()
    runner.start()
    try:
        while runner.is_alive():
            until = time.time() + 0.5  # short windows: many seams
            seen += [event.jid for event in backend.events(since, until)]
            since = until
        seen += [event.jid for event in backend.events(since, time.time() + 2)]  # the last exits
    finally:
        runner.join()
        backend.close()
    assert {name: seen.count(name) for name in names} == dict.fromkeys(names, LIFE_EVENTS[engine.name])
