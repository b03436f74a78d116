"""The job store's faults: PostgreSQL stopped under a running service (a server of the test's
own), and SQLite's disk full (a 2 MiB tmpfs storeBase)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pfcon.app import close_app, create_app
from pfcon.jobs import ROW_REUSE_SECONDS
from pfcon.settings import load_settings
from pfcon.store import JobStore, database
from tests.api_helpers import login, submit, wait_terminal
from tests.helpers import TEST_LABEL, job_form
from tests.private_postgres import PrivatePostgres

pytestmark = pytest.mark.integration


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    if why := server.available():
        pytest.skip(why)
    server.create()
    yield server
    server.destroy()


def _listing(storebase: Path) -> list[str]:
    return sorted(p.name for p in storebase.iterdir() if p.name.startswith("key-")) + sorted(
        p.name for p in (storebase / ".pfcon-uploads").iterdir()
    )


def test_postgresql_stopped_is_503_naming_it_and_the_same_process_recovers(
    docker_client, private_postgres: PrivatePostgres, storebase: Path, jid: str
) -> None:
    settings = {"APPLICATION_MODE": "development", "STOREBASE": str(storebase), "JOB_LABELS": TEST_LABEL}
    app = create_app(load_settings({**settings, "PFCON_DATABASE_URL": private_postgres.url}))
    try:
        client = app.test_client()
        auth = login(client)
        assert submit(client, auth, job_form(f"{jid}-before"), {"a.txt": "x"}).status_code == 201
        assert wait_terminal(client, auth, f"{jid}-before")["compute"]["status"] == "finishedSuccessfully"
        where = f"postgresql database at 127.0.0.1:{private_postgres.port}/postgres"
        private_postgres.stop()
        try:
            health = client.get("/api/v1/health/")
            assert health.status_code == 503 and where in health.get_json()["message"], health.get_json()
            refused = submit(client, auth, job_form(jid), {"a.txt": "never staged"})
            assert refused.status_code == 503 and where in refused.get_json()["message"]
            assert _listing(storebase) == [f"key-{jid}-before"]  # nothing staged
            time.sleep(ROW_REUSE_SECONDS)  # a record read less than this ago may still answer
            status = client.get(f"/api/v1/jobs/{jid}-before/", headers=auth)
            assert status.status_code == 503 and "does not answer" in status.get_json()["message"]
        finally:
            private_postgres.start()
        assert client.get("/api/v1/health/").status_code == 200
        finished = client.get(f"/api/v1/jobs/{jid}-before/", headers=auth).get_json()["compute"]
        assert finished["status"] == "finishedSuccessfully"
        assert submit(client, auth, job_form(jid), {"a.txt": "after"}).status_code == 201
        assert wait_terminal(client, auth, jid)["compute"]["status"] == "finishedSuccessfully"
    finally:
        close_app(app)


@pytest.fixture
def tiny_storebase(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs storeBase (needs root to mount, as CI has)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)]).returncode:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_under_sqlite_is_507_and_records_nothing(
    docker_client, tiny_storebase: Path, jid: str
) -> None:
    (tiny_storebase / "data").mkdir()
    settings = {
        "APPLICATION_MODE": "development",
        "STOREBASE": str(tiny_storebase),
        "PFCON_INNETWORK": "true",
        "STORAGE_ENV": "filesystem",
        "JOB_LABELS": TEST_LABEL,
    }
    app = create_app(load_settings(settings))
    try:
        app.extensions["pfcon"].starter.pause()
        client = app.test_client()
        auth = login(client)
        filler = tiny_storebase / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        for size in (65536, 512):  # fill the disk to the last block
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
        os.close(fd)
        answers = []
        for n in range(200):
            form = job_form(f"{jid}-{n}", input_dirs="data", output_dir=f"out-{n}")
            answer = submit(client, auth, form)
            answers.append(answer.status_code)
            if answer.status_code == 507:
                assert "no space left" in answer.get_json()["message"]
                assert not (tiny_storebase / f"key-{jid}-{n}").exists()
                break
        assert answers[-1] == 507 and set(answers) <= {201, 507}, answers
        os.unlink(filler)
        assert app.extensions["pfcon"].store.latest(f"{jid}-{len(answers) - 1}") is None  # nothing recorded
        answer = submit(client, auth, job_form(f"{jid}-after", input_dirs="data", output_dir="out-after"))
        assert answer.status_code == 201, answer.get_json()
    finally:
        close_app(app)


def test_only_a_connection_idle_for_a_while_is_pinged_and_a_dead_one_is_replaced(
    private_postgres: PrivatePostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A status poll on a busy service reuses a connection used a moment ago without a second
    round trip; one idle for longer is pinged first, so a server restarted meanwhile costs no
    request a 503."""
    engine = database.create(private_postgres.url)
    pings: list[object] = []
    ping = engine.dialect.do_ping
    monkeypatch.setattr(
        engine.dialect, "do_ping", lambda connection: pings.append(connection) or ping(connection)
    )
    store = JobStore(engine, private_postgres.url)
    try:
        store.ping()
        store.ping()
        assert pings == []  # new, then used a moment ago
        private_postgres.stop()
        private_postgres.start()  # the pooled connection is dead now
        time.sleep(database.PING_IDLE_SECONDS + 0.2)
        assert store.ping().startswith("postgresql database")  # no 503: replaced after its ping failed
        assert len(pings) == 1
    finally:
        store.close()
