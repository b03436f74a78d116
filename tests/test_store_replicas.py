"""Two pfcon replicas (separate gunicorns, two workers each) on one PostgreSQL and one storeBase:
every job is started exactly once, and either replica answers status, output and delete for any
job; a replica stopped mid-run leaves its queued jobs to the other and answers again on return."""

from __future__ import annotations

import io
import re
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from pfcon.store import database
from pfcon.store.repository import JobStore
from tests.helpers import TERMINAL, TEST_LABEL, job_form, make_zip, wait_for
from tests.live import live_pfcon

pytestmark = pytest.mark.integration
JOBS = 100
STARTED = re.compile(r"\[([^\]]+)\] started$", re.MULTILINE)


def _session(url: str) -> requests.Session:
    session = requests.Session()
    token = session.post(url + "auth-token/", json={"pfcon_user": "pfcon", "pfcon_password": "pfcon1234"})
    session.headers["Authorization"] = f"Bearer {token.json()['token']}"
    return session


def _submit(session: requests.Session, url: str, jid: str, **form) -> None:
    files = {"data_file": ("in.zip", make_zip({"a.txt": jid}))}
    answer = session.post(url + "jobs/", data=job_form(jid, **form), files=files, timeout=60)
    assert answer.status_code == 201, answer.text


def _status(session: requests.Session, url: str, jid: str) -> str:
    answer = session.get(url + f"jobs/{jid}/", timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["compute"]["status"]


def _output(session: requests.Session, url: str, jid: str) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(session.get(url + f"jobs/{jid}/file/", timeout=60).content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _starts(*logs: Path) -> Counter[str]:
    return Counter(jid for log in logs for jid in STARTED.findall(log.read_text()))


def test_two_replicas_start_each_job_once_and_answer_for_all(
    docker_client, postgresql_url: str, storebase: Path, tmp_path: Path, jid: str
) -> None:
    env = {  # the queue on, with room for every job: one admission lock across both replicas
        "JOB_LABELS": TEST_LABEL,
        "PFCON_DATABASE_URL": postgresql_url,
        "PFCON_WORKERS": "2",
        "PFCON_CAPACITY_CPUS": "256",
    }
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    jids = [f"{jid}-{n}" for n in range(JOBS)]
    with live_pfcon(storebase, logs[0], env) as a, live_pfcon(storebase, logs[1], env) as b:
        urls, sessions = (a, b), (_session(a), _session(b))

        def on(n: int) -> tuple[requests.Session, str]:
            return sessions[n % 2], urls[n % 2]

        def other(n: int) -> tuple[requests.Session, str]:
            return sessions[(n + 1) % 2], urls[(n + 1) % 2]

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: _submit(*on(n), jids[n]), range(JOBS)))
            finished = list(
                pool.map(
                    lambda n: wait_for(
                        lambda: (s := _status(*(on(n) if n % 3 else other(n)), jids[n])) in TERMINAL and s,
                        timeout=300,
                        interval=0.5,
                    ),
                    range(JOBS),
                )
            )
        assert finished == ["finishedSuccessfully"] * JOBS
        for n in range(0, JOBS, 10):  # output from the replica that did not take the job
            assert _output(*other(n), jids[n]) == {"out-a.txt": jids[n].encode()}
        with ThreadPoolExecutor(8) as pool:
            assert set(
                pool.map(
                    lambda n: other(n)[0].delete(other(n)[1] + f"jobs/{jids[n]}/").status_code, range(JOBS)
                )
            ) == {204}
    starts = _starts(*logs)
    assert {one: starts[one] for one in jids} == dict.fromkeys(jids, 1)
    store = JobStore(database.create(postgresql_url), postgresql_url)
    try:
        for one in jids[:10]:
            row = store.latest(one)
            assert [e.state for e in store.events(row.id)].count("started") == 1
    finally:
        store.close()
    # this test's own jobs only: the session's label also marks other tests' containers
    left = docker_client.containers.list(all=True, filters={"label": TEST_LABEL})
    assert not [container.name for container in left if container.name in set(jids)]


def test_a_replica_stopped_mid_run_leaves_its_queue_to_the_other(
    docker_client, postgresql_url: str, storebase: Path, tmp_path: Path, jid: str
) -> None:
    env = {"JOB_LABELS": TEST_LABEL, "PFCON_DATABASE_URL": postgresql_url, "PFCON_START_WORKERS": "1"}
    jids = [f"{jid}-{n}" for n in range(12)]
    with live_pfcon(storebase, tmp_path / "b.log", env) as b:
        with live_pfcon(storebase, tmp_path / "a1.log", env) as a:
            session_a = _session(a)
            for one in jids:
                _submit(session_a, a, one, args=["--sleep", "2", "--prefix", "out-"])
        # replica A stopped with most of its jobs still queued: B starts them
        session_b = _session(b)
        for one in jids:
            assert wait_for(lambda one=one: _status(session_b, b, one) == "finishedSuccessfully", timeout=180)
        with live_pfcon(storebase, tmp_path / "a2.log", env) as a:  # A is back and answers for all
            session_a = _session(a)
            assert {_status(session_a, a, one) for one in jids} == {"finishedSuccessfully"}
            for one in jids:
                assert session_a.delete(a + f"jobs/{one}/").status_code == 204
    starts = _starts(tmp_path / "a1.log", tmp_path / "b.log", tmp_path / "a2.log")
    assert {one: starts[one] for one in jids} == dict.fromkeys(jids, 1)
    assert _starts(tmp_path / "b.log"), "B took over none of A's queue"
