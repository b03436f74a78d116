"""Running jobs' status from one periodic query for all live jobs: the real Slurm cluster, Swarm.

Every scheduler command (Slurm) or engine request (Swarm) the backend makes is recorded with
the thread that made it: a status poll (the test's thread) asks nothing of the job's state,
the feed's thread asks once per round for all live jobs together, and the end of a job shows
within a poll round.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from pfcon.jobs import JobService
from tests.api_helpers import login, submit, wait_started
from tests.helpers import TEST_LABEL, job_form, wait_for
from tests.slurm_fixtures import remove_slurm_containers, slurm_cluster  # noqa: F401
from tests.swarm_fixtures import no_leftover_services_fixture, swarm_client_fixture  # noqa: F401
from tests.test_status_feed import EngineCalls

pytestmark = pytest.mark.integration

WAIT_FOR_STOP = "echo hello from the job; while [ ! -e /share/incoming/stop ]; do sleep 0.05; done; echo bye"


def test_slurm_status_polls_run_no_command_and_one_squeue_serves_all_jobs(
    slurm_cluster,  # noqa: F811
    make_app,
    docker_client,
    storebase: Path,
    jid: str,
) -> None:
    app = make_app(CONTAINER_ENV="slurm", JOB_LABELS=TEST_LABEL, TIMELIMIT_MINUTES="10")
    service: JobService = app.extensions["pfcon"]
    commands: list[tuple[str, list[str]]] = []
    backend = getattr(service.backend, "wrapped", service.backend)  # under the metrics' timing proxy
    run = backend._run

    def recorded(argv, timeout=None):
        commands.append((threading.current_thread().name, list(argv)))
        return run(argv, timeout)

    backend._run = recorded
    client = app.test_client()
    auth = login(client)
    jids = [jid, f"{jid}-b"]
    try:
        start_waiting_jobs(client, auth, service, jids)

        commands.clear()
        for _ in range(40):
            answer = client.get(f"/api/v1/jobs/{jid}/", headers=auth).get_json()["compute"]
            assert answer["status"] == "started", answer
        time.sleep(2.2)
        mine = threading.current_thread().name
        assert [argv for name, argv in commands if name == mine] == [], "a status poll ran a slurm command"
        rounds = [argv for name, argv in commands if name == "pfcon-poll-feed"]
        assert rounds, "the feed did not poll"
        assert all(
            argv[0] == "squeue" and set(argv[-1].split(",")) == {*_slurm_ids(service, jids)}
            for argv in rounds
        )

        (storebase / f"key-{jid}" / "incoming" / "stop").write_text("")
        engine_said = _when_the_backend_says_finished(service, jid)
        wait_for(
            lambda: (
                client.get(f"/api/v1/jobs/{jid}/", headers=auth).get_json()["compute"]["status"]
                == "finishedSuccessfully"
            ),
            interval=0.05,
            timeout=60,
        )
        delay = time.monotonic() - engine_said.result()
        # a poll round is 1 s plus one squeue: the change shows within a round of Slurm saying it
        assert delay < 2.0, f"the end of the job showed {delay:.2f} s after slurm said it"
        assert [argv for name, argv in commands if name == mine] == []
        row = service.store.live(jid)
        assert row is not None and row.status == "finishedSuccessfully" and "bye" in (row.logs or "")
    finally:
        for each in jids:
            client.delete(f"/api/v1/jobs/{each}/", headers=auth)
        service.feed.close()
        remove_slurm_containers(docker_client)


def start_waiting_jobs(client, auth, service: JobService, jids: list[str]) -> None:
    """Jobs that wait for a ``stop`` file, running and seen by the feed."""
    for each in jids:
        form = job_form(each, entrypoint=["sh"], args=["-c", WAIT_FOR_STOP], type="fs")
        assert submit(client, auth, form, {"a": "1"}).status_code == 201
    for each in jids:
        wait_started(client, auth, each, timeout=120)
        wait_for(lambda each=each: service.feed.current(each), timeout=30)


def _when_the_backend_says_finished(service: JobService, jid: str) -> Future[float]:
    """In a thread of its own (its commands are not the request path's): when the backend,
    asked directly and often, first says the job finished."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="probe")

    def probe() -> float:
        while not service.backend.info(jid).status.terminal:
            time.sleep(0.1)
        return time.monotonic()

    try:
        return pool.submit(probe)
    finally:
        pool.shutdown(wait=False)


def _slurm_ids(service: JobService, jids: list[str]) -> list[str]:
    return [service.backend._record(service.backend._files(each), each)["job_id"] for each in jids]


def test_swarm_status_polls_ask_no_task_and_one_round_serves_all_jobs(
    make_app,
    swarm_client,
    storebase: Path,
    jid: str,
) -> None:
    app = make_app(CONTAINER_ENV="swarm")
    service: JobService = app.extensions["pfcon"]
    calls = EngineCalls()
    calls.install(service.backend.client)
    client = app.test_client()
    auth = login(client)
    jids = [jid, f"{jid}-b"]
    try:
        start_waiting_jobs(client, auth, service, jids)
        wait_for(  # swarm's service logs lag the container's a little
            lambda: "hello" in client.get(f"/api/v1/jobs/{jid}/", headers=auth).get_json()["compute"]["logs"],
            timeout=30,
        )

        calls.clear()
        began = time.monotonic()
        for _ in range(40):
            answer = client.get(f"/api/v1/jobs/{jid}/", headers=auth).get_json()["compute"]
            assert answer["status"] == "started" and "hello from the job" in answer["logs"], answer
        elapsed = time.monotonic() - began
        time.sleep(2.2)
        mine = calls.by(threading.current_thread().name)
        assert not [path for _, path in mine if "/tasks" in path], "a status poll asked swarm for tasks"
        log_reads = [path for _, path in mine if path.endswith("/logs")]
        assert len(log_reads) <= math.ceil(elapsed) + 1, (log_reads, elapsed)
        feed = [path for _, path in calls.by("pfcon-poll-feed")]
        assert feed.count("/v1.41/tasks") >= 2, feed
        # each round is one service list and one task list for all jobs, never a call per job
        assert set(feed) == {"/v1.41/services", "/v1.41/tasks"}, feed

        (storebase / f"key-{jid}" / "incoming" / "stop").write_text("")
        wait_for(
            lambda: (
                client.get(f"/api/v1/jobs/{jid}/", headers=auth).get_json()["compute"]["status"]
                == "finishedSuccessfully"
            ),
            interval=0.05,
            timeout=60,
        )
        row = service.store.live(jid)
        assert row is not None and row.status == "finishedSuccessfully" and "bye" in (row.logs or "")
    finally:
        service.feed.close()
