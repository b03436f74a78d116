"""The job service over the store, on SQLite and on a real PostgreSQL, with the real Docker engine:
the lifecycle a client sees, the events recorded, a DELETE racing the start, and old records."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.api_helpers import login, submit, wait_terminal
from tests.helpers import TEST_LABEL, job_form, make_zip

pytestmark = pytest.mark.integration


@pytest.fixture
def service_app(make_app, database_url: str):
    return make_app(PFCON_DATABASE_URL=database_url)


def test_lifecycle_as_recorded(service_app, docker_client, jid: str) -> None:
    client = service_app.test_client()
    auth = login(client)
    store = service_app.extensions["pfcon"].store
    assert client.get("/api/v1/health/").get_json()["database"] == store.name
    answer = submit(client, auth, job_form(jid, args=["--fail", "3"]), {"a.txt": "x"})
    assert answer.status_code == 201 and answer.get_json()["compute"]["status"] == "notstarted"
    finished = wait_terminal(client, auth, jid)["compute"]
    assert finished["status"] == "finishedWithError" and "code 3" in finished["message"]
    row = store.live(jid)
    assert (
        row.state == "finished"
        and row.exit_code == 3
        and row.auid == "cube"
        and row.image == finished["image"]
    )
    docker_client.containers.get(jid).remove(force=True)  # the engine forgets it
    assert client.get(f"/api/v1/jobs/{jid}/", headers=auth).get_json()["compute"] == finished
    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204
    assert client.get(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 404
    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 404
    events = [(event.state, event.message) for event in store.events(row.id)]
    assert [state for state, _ in events] == [
        "accepted",
        "queued",
        "queued",
        "started",
        "finished",
        "deleted",
    ]
    assert events[2][1].startswith("admitted:")  # the admission queue's turn (docs/admission.md)


def test_delete_racing_the_start_never_fails_or_blocks_the_jid(service_app, docker_client, jid: str) -> None:
    """Issue 11 item 14: a DELETE right after the 201, while the scheduler starts the job."""
    client = service_app.test_client()
    auth = login(client)
    jids = [f"{jid}-{n}" for n in range(12)]

    def submit_then_delete(one: str) -> tuple[int, int]:
        created = submit(client, auth, job_form(one, args=["--sleep", "5"]), {"a": "x"}).status_code
        return created, client.delete(f"/api/v1/jobs/{one}/", headers=auth).status_code

    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(submit_then_delete, jids)) == {(201, 204)}
    service_app.extensions["pfcon"].starter.shutdown()  # every start that was in flight has ended
    listed = docker_client.api.containers(all=True, filters={"label": TEST_LABEL})  # no inspect: no race
    leftovers = [name.lstrip("/") for c in listed for name in c["Names"] if name.lstrip("/") in jids]
    assert leftovers == []
    for one in jids:
        assert client.get(f"/api/v1/jobs/{one}/", headers=auth).status_code == 404


def test_a_submission_the_storage_refuses_leaves_no_record(service_app, jid: str) -> None:
    client = service_app.test_client()
    auth = login(client)
    bad = {"data_file": (make_zip({"../escape": "x"}), "in.zip")}
    answer = client.post("/api/v1/jobs/", data={**job_form(jid), **bad}, headers=auth)
    assert answer.status_code == 400
    assert service_app.extensions["pfcon"].store.latest(jid) is None


def test_records_of_an_older_pfcon_answer_as_before(make_app, storebase: Path, jid: str) -> None:
    """A storeBase written by the job.json version: its jobs are imported once at start."""
    (storebase / f"key-{jid}").mkdir()
    record = {
        "jid": jid,
        "image": "busybox",
        "cmd": "true",
        "state": "failed",
        "message": "failed to start: no such image",
        "accepted_at": "2026-11-01T10:00:00Z",
        "spec": None,
    }
    (storebase / f"key-{jid}/job.json").write_text(json.dumps(record))
    client = make_app().test_client()
    auth = login(client)
    compute = client.get(f"/api/v1/jobs/{jid}/", headers=auth).get_json()["compute"]
    assert compute["status"] == "finishedWithError" and compute["message"] == record["message"]
    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204
