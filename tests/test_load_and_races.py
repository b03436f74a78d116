"""Many clients at once against a live gunicorn on the real engine: races on one jid, and a
burst of 200 jobs after which nothing has leaked (containers, file descriptors, threads)."""

from __future__ import annotations

import io
import os
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.helpers import TERMINAL, TEST_LABEL, job_form, make_zip, wait_for
from tests.live import LiveUrl, live_pfcon

pytestmark = pytest.mark.integration
CLIENTS = 8
BURST = 200
#: small pools, so the bound on threads is tight: a worker holds at most its main thread, its
#: request threads, its starter threads and a couple of helpers, however many jobs it served.
#: The admission queue stays on (its scheduler and lock run under the burst, woken by the feed) with
#: room for the whole burst, so the test measures leaks rather than this machine's two cores.
# few threads to see leaks; upload slots for every client (slow clients: test_slow_clients.py)
SERVING = {
    "JOB_LABELS": TEST_LABEL,
    "PFCON_THREADS": "6",
    "PFCON_START_WORKERS": "3",
    "PFCON_UPLOAD_SLOTS": "8",
    "PFCON_CAPACITY_CPUS": "256",
}
#: main, request threads, starters; then one each: scheduler, the engine status feed (the
#: process's one event stream, which also wakes the admission queue), the pfcon 6 operations'
#: progress reporter, the staging sweeper, spare
MAX_THREADS = 1 + 6 + 3 + 5


def _session(url: str) -> requests.Session:
    session = requests.Session()
    token = session.post(url + "auth-token/", json={"pfcon_user": "pfcon", "pfcon_password": "pfcon1234"})
    session.headers["Authorization"] = f"Bearer {token.json()['token']}"
    return session


def _submit(session: requests.Session, url: str, jid: str, content: str) -> requests.Response:
    files = {"data_file": ("in.zip", make_zip({"a.txt": content}))}
    return session.post(url + "jobs/", data=job_form(jid), files=files, timeout=60)


def _finish(session: requests.Session, url: str, jid: str) -> str:
    body = wait_for(
        lambda: (
            (c := session.get(url + f"jobs/{jid}/", timeout=30).json()["compute"])["status"] in TERMINAL and c
        ),
        timeout=300,
        interval=0.5,
    )
    return body["status"]


def _output(session: requests.Session, url: str, jid: str) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(session.get(url + f"jobs/{jid}/file/", timeout=60).content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_one_jid_from_many_clients_at_once_has_one_winner(
    docker_client, storebase: Path, tmp_path, jid
) -> None:
    with live_pfcon(storebase, tmp_path / "pfcon.log", {"JOB_LABELS": TEST_LABEL}) as url:
        sessions = [_session(url) for _ in range(CLIENTS)]
        barrier = threading.Barrier(CLIENTS)

        def race(index: int) -> tuple[int, int]:
            barrier.wait()
            return index, _submit(sessions[index], url, jid, f"client {index}").status_code

        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = dict(pool.map(race, range(CLIENTS)))
        assert sorted(answers.values()) == [201] + [409] * (CLIENTS - 1), answers
        winner = next(index for index, code in answers.items() if code == 201)
        assert _finish(sessions[0], url, jid) == "finishedSuccessfully"
        assert _output(sessions[0], url, jid) == {"out-a.txt": f"client {winner}".encode()}
        assert sessions[0].delete(url + f"jobs/{jid}/").status_code == 204


def _resources(url: LiveUrl) -> dict[int, tuple[int, int]]:
    """(open file descriptors, threads) of each gunicorn worker."""
    found = {}
    for pid in url.worker_pids():
        threads = next(
            int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("Threads:")
        )  # fmt: skip
        found[pid] = (len(os.listdir(f"/proc/{pid}/fd")), threads)
    return found


def _round(url: str, sessions: list[requests.Session], prefix: str, count: int) -> list[str]:
    """Submit ``count`` jobs spread over the clients at once, wait for all, check, delete."""
    jids = [f"{prefix}-{n}" for n in range(count)]

    def run(n: int) -> str:
        session = sessions[n % len(sessions)]
        answer = _submit(session, url, jids[n], f"job {n}")
        assert answer.status_code == 201, answer.text
        return jids[n]

    with ThreadPoolExecutor(len(sessions)) as pool:
        list(pool.map(run, range(count)))
        statuses = list(pool.map(lambda n: _finish(sessions[n % len(sessions)], url, jids[n]), range(count)))
    assert statuses == ["finishedSuccessfully"] * count
    for n in (0, count // 2, count - 1):
        assert _output(sessions[0], url, jids[n]) == {"out-a.txt": f"job {n}".encode()}

    def delete(n: int) -> int:
        return sessions[n % len(sessions)].delete(url + f"jobs/{jids[n]}/").status_code

    with ThreadPoolExecutor(len(sessions)) as pool:
        assert list(pool.map(delete, range(count))) == [204] * count
    return jids


def test_a_burst_of_jobs_leaks_nothing(docker_client, storebase: Path, tmp_path) -> None:
    prefix = f"burst-{os.getpid()}"
    with live_pfcon(storebase, tmp_path / "pfcon.log", SERVING) as url:
        sessions = [_session(url) for _ in range(CLIENTS)]
        _round(url, sessions, f"{prefix}-warm", 2 * CLIENTS)  # fill thread and connection pools
        before = _resources(url)
        _round(url, sessions, prefix, BURST)
        after = wait_for(lambda: (now := _resources(url)) and _settled(before, now) and now, timeout=60)
        for pid, (fds, threads) in after.items():
            assert fds <= _warm_fds(before) + 8, (pid, before, after)
            assert threads <= max(before[pid][1], MAX_THREADS), (pid, before[pid], after[pid])
    assert not docker_client.containers.list(all=True, filters={"label": TEST_LABEL})
    assert sorted(p.name for p in storebase.iterdir()) == [".pfcon", ".pfcon-uploads"]
    assert not any((storebase / ".pfcon-uploads").iterdir())
    log = (tmp_path / "pfcon.log").read_text()
    assert "Traceback" not in log and "ERROR" not in log


def _warm_fds(before: dict[int, tuple[int, int]]) -> int:
    """The descriptors of a warm worker: the most any worker held after the warm-up round.

    The workers are alike, but the warm-up's requests need not reach both: one that served
    none of them opens its pools' connections (engine, database) during the burst, up to
    what the other already holds. A leak grows with the burst's 200 jobs, far past this.
    """
    return max(fds for fds, _ in before.values())


def _settled(before: dict[int, tuple[int, int]], now: dict[int, tuple[int, int]]) -> bool:
    """Same workers (none crashed and was replaced), idle connections given time to close."""
    return set(now) == set(before) and all(now[p][0] <= _warm_fds(before) + 8 for p in now)
