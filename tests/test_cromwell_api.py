"""The jobs API with CONTAINER_ENV=cromwell, pointed at the in-test Cromwell.

The in-test Cromwell runs no container, so these tests follow a job through pfcon's HTTP API
and check what reached Cromwell and what pfcon answers; the job's outputs are whatever the
(empty) output folder holds.
"""

from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path

import pytest

from pfcon.compute.cromwell.backend import JOB_LABEL, REF_FILE, REMOVED
from tests.api_helpers import login, submit, wait_terminal
from tests.cromwell_server import FakeCromwell, Plan
from tests.helpers import TEST_LABELS, job_form, wait_for


@pytest.fixture
def cromwell(storebase: Path):
    server = FakeCromwell(storebase / "cromwell-executions").start()
    yield server
    server.stop()


@pytest.fixture
def make_cromwell_app(make_settings, cromwell: FakeCromwell, build_app):
    """Apps on the fake Cromwell, closed before it stops."""
    return lambda **env: build_app(make_settings(CONTAINER_ENV="cromwell", CROMWELL_URL=cromwell.url, **env))


@pytest.fixture
def api(make_cromwell_app):
    client = make_cromwell_app(TIMELIMIT_MINUTES="45").test_client()
    return client, login(client)


def test_health_and_server_info(api, cromwell: FakeCromwell) -> None:
    client, auth = api
    health = client.get("/api/v1/health/")
    assert health.status_code == 200 and health.get_json()["engine"] == f"cromwell 86 at {cromwell.url}"
    assert client.get("/api/v1/jobs/", headers=auth).get_json()["container_env"] == "cromwell"
    cromwell.fail_with = (500, "Cromwell's database is down")
    health = client.get("/api/v1/health/")
    assert health.status_code == 503 and "database is down" in health.get_json()["message"]


def test_submit_poll_download_delete(api, cromwell: FakeCromwell, storebase: Path, jid: str) -> None:
    client, auth = api
    cromwell.planner = lambda w: Plan(queued=0.3, running=1.5, stdout="copied ./a.txt\npl-copy: done\n")
    answer = submit(client, auth, job_form(jid, env=["GREETING=it's ~{me}"]), {"a.txt": "alpha"})
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json()["compute"]["status"] == "notstarted"

    states = set()

    def poll():
        compute = client.get(f"/api/v1/jobs/{jid}/", headers=auth).get_json()["compute"]
        states.add(compute["status"])
        return compute if compute["status"] in {"finishedSuccessfully", "finishedWithError"} else None

    final = wait_for(poll, timeout=15, interval=0.05)
    assert final["status"] == "finishedSuccessfully", final
    assert {"notstarted", "started"} <= states
    assert final["logs"] == "copied ./a.txt\npl-copy: done\n" and final["timestamp"]
    assert final["cmd"] == "pl-copy --prefix out- /share/incoming /share/outgoing"

    workflow = cromwell.by_jid(jid)
    assert workflow.command.startswith("export GREETING='it'\"'\"'s ~{me}'\n")
    assert workflow.command.endswith("pl-copy --prefix out- /share/incoming /share/outgoing")
    assert workflow.runtime["incoming_dir"] == str(storebase / f"key-{jid}/incoming")
    assert workflow.runtime["outgoing_dir"] == str(storebase / f"key-{jid}/outgoing")
    assert workflow.runtime["timelimit"] == 45 and workflow.runtime["memory"] == "200 MiB"
    assert workflow.labels == {
        **TEST_LABELS,
        "org.chrisproject.job_type": "plugin",
        JOB_LABEL: jid,
    }
    assert workflow.id in (storebase / f"key-{jid}" / REF_FILE).read_text()

    out = client.get(f"/api/v1/jobs/{jid}/file/", headers=auth)
    assert out.status_code == 200 and out.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(out.data)) as archive:
        assert archive.namelist() == []  # nothing ran, nothing is pretended

    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204
    assert workflow.labels[JOB_LABEL] == REMOVED and not (storebase / f"key-{jid}").exists()
    assert client.get(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 404


def test_env_values_arrive_unchanged(api, cromwell: FakeCromwell, jid: str) -> None:
    client, auth = api
    value = 'it\'s ~{me} ${HOME} "quoted" >>> \\'
    form = job_form(jid, entrypoint=["sh"], args=["-c", 'printf %s "$GREETING"'], env=[f"GREETING={value}"])
    assert submit(client, auth, form, {"a.txt": "alpha"}).status_code == 201
    workflow = wait_for(lambda: [w for w in cromwell.workflows.values() if w.labels.get(JOB_LABEL) == jid])[0]
    # the command line as Cromwell evaluates it, run by a real shell here: `sh -c` takes the
    # trailing /share/... arguments as $0 and $1, so it prints just the variable
    result = subprocess.run(["bash", "-c", workflow.command], capture_output=True, text=True)
    assert result.stdout == value, (workflow.command, result.stderr)


def test_a_failed_workflow_reads_finished_with_error(api, cromwell: FakeCromwell, jid: str) -> None:
    client, auth = api
    cromwell.planner = lambda w: Plan(return_code=2, stderr="usage: pl-copy\n")
    assert submit(client, auth, job_form(jid), {"a.txt": "alpha"}).status_code == 201
    compute = wait_terminal(client, auth, jid, timeout=15)["compute"]
    assert compute["status"] == "finishedWithError"
    assert "exited with return code 2" in compute["message"] and compute["logs"] == "usage: pl-copy\n"


def test_deleting_a_running_job_aborts_its_workflow(api, cromwell: FakeCromwell, jid: str) -> None:
    client, auth = api
    cromwell.planner = lambda w: Plan(running=60)
    assert submit(client, auth, job_form(jid), {"a.txt": "alpha"}).status_code == 201
    status = lambda: client.get(f"/api/v1/jobs/{jid}/", headers=auth).get_json()["compute"]["status"]  # noqa: E731
    wait_for(lambda: status() == "started")
    workflow = cromwell.by_jid(jid)
    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204
    assert workflow.aborted_at is not None and workflow.labels[JOB_LABEL] == REMOVED


def test_cromwell_refusing_the_workflow_reads_failed_to_start(api, cromwell: FakeCromwell, jid: str) -> None:
    """A refusal at submission (400 with Cromwell's message) is recorded as the job's failure."""
    client, auth = api
    jid2 = jid + "-2"
    original = cromwell.submit
    cromwell.submit = lambda parts: (400, {"status": "fail", "message": "Error(s): Invalid workflow options"})
    try:
        assert submit(client, auth, job_form(jid2), {"a.txt": "alpha"}).status_code == 201
        compute = wait_terminal(client, auth, jid2, timeout=15)["compute"]
    finally:
        cromwell.submit = original
    assert compute["status"] == "finishedWithError"
    assert compute["message"] == (
        "failed to start: Cromwell refused to accept the workflow: Error(s): Invalid workflow options"
    )


def test_cromwell_down_is_503_and_leaves_nothing(
    api, cromwell: FakeCromwell, storebase: Path, jid: str
) -> None:
    client, auth = api
    cromwell.stop()
    answer = submit(client, auth, job_form(jid), {"a.txt": "alpha"})
    assert answer.status_code == 503 and "does not answer" in answer.get_json()["message"]
    assert not (storebase / f"key-{jid}").exists()


def test_status_survives_a_restart_without_asking_the_query_index(
    make_cromwell_app, cromwell: FakeCromwell, jid: str
) -> None:
    cromwell.query_lag = 300  # Cromwell's summary has not caught up with the submission
    cromwell.planner = lambda w: Plan(running=1.0)
    client = make_cromwell_app().test_client()
    auth = login(client)
    assert submit(client, auth, job_form(jid), {"a.txt": "alpha"}).status_code == 201
    wait_for(lambda: any(w.labels.get(JOB_LABEL) == jid for w in cromwell.workflows.values()))
    restarted = make_cromwell_app().test_client()
    compute = wait_terminal(restarted, login(restarted), jid, timeout=15)["compute"]
    assert compute["status"] == "finishedSuccessfully", compute


def test_a_bad_env_name_is_400(api, cromwell: FakeCromwell, storebase: Path, jid: str) -> None:
    client, auth = api
    answer = submit(client, auth, job_form(jid, env=["BAD-NAME=x"]), {"a.txt": "alpha"})
    assert answer.status_code == 400 and "BAD-NAME" in answer.get_json()["message"]
    assert not (storebase / f"key-{jid}").exists() and cromwell.workflows == {}
