"""The jobs API end to end on a real Docker engine, through the Flask app."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import docker
import pytest

from tests.api_helpers import login, submit, submit_ticking_job, wait_started, wait_terminal
from tests.helpers import job_form, wait_for

pytestmark = pytest.mark.integration


def test_health_and_server_info(client, auth, docker_client) -> None:
    health = client.get("/api/v1/health/")
    assert health.status_code == 200
    assert health.get_json()["health"] == "OK" and "docker" in health.get_json()["engine"]
    info = client.get("/api/v1/jobs/", headers=auth).get_json()
    queue = info.pop("queue")  # our addition: the admission queue (docs/admission.md)
    assert info == {
        "server_version": info["server_version"],
        "pfcon_innetwork": False,
        "storage_env": "zipfile",
        "container_env": "docker",
        "compute_volume_type": "host",
    }
    host = docker_client.info()  # the capacity is read from the engine by default
    assert queue["capacity"] == {"cpus": host["NCPU"], "memory_mib": host["MemTotal"] // 2**20, "gpus": 0}
    assert queue["queued"] == 0 and queue["running"] == 0 and queue["free"] == queue["capacity"]


def test_submit_poll_download_delete(client, auth, jid: str, storebase: Path, docker_client) -> None:
    files = {"a.txt": "alpha", "dir/b.txt": "beta", "dir/ref.chrislink": "a.txt"}
    answer = submit(client, auth, job_form(jid, env=["GREETING=hi"]), files)
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    assert body["data"]["jid"] == jid and body["data"]["nfiles"] == 3  # a, b, and the copy the link became
    assert body["data"]["path"] == str(storebase / f"key-{jid}/incoming")
    compute = body["compute"]
    assert compute["status"] == "notstarted" and compute["jid"] == jid and compute["logs"] == ""
    assert compute["cmd"] == "pl-copy --prefix out- /share/incoming /share/outgoing"
    assert (storebase / f"key-{jid}/incoming/dir/a.txt").read_text() == "alpha"
    assert not (storebase / f"key-{jid}/incoming/dir/ref.chrislink").exists()

    final = wait_terminal(client, auth, jid)["compute"]
    assert final["status"] == "finishedSuccessfully", final
    assert "pl-copy: done" in final["logs"] and final["timestamp"]
    assert docker_client.containers.get(jid).attrs["Config"]["Env"].count("GREETING=hi") == 1

    out = client.get(f"/api/v1/jobs/{jid}/file/", headers=auth)
    assert out.status_code == 200 and out.mimetype == "application/zip"
    assert f'filename="{jid}.zip"' in out.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(out.data)) as archive:
        assert sorted(archive.namelist()) == ["dir/out-a.txt", "dir/out-b.txt", "out-a.txt"]
        assert archive.read("dir/out-b.txt") == b"beta"

    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204
    assert not (storebase / f"key-{jid}").exists()
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(jid)
    assert client.get(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 404
    assert client.get(f"/api/v1/jobs/{jid}/file/", headers=auth).status_code == 404
    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 404


def test_failing_job_reports_finished_with_error(client, auth, jid: str) -> None:
    form = job_form(jid, entrypoint=["pl-copy"], args=["--fail", "7"])
    assert submit(client, auth, form, {"a": "x"}).status_code == 201
    compute = wait_terminal(client, auth, jid)["compute"]
    assert compute["status"] == "finishedWithError" and "code 7" in compute["message"]
    assert "failing on request" in compute["logs"]


def test_start_failure_is_finished_with_error_with_the_reason(make_app, jid: str) -> None:
    """No GPU on this machine: the 201 came first, the engine's refusal shows in the status.

    With the queue off: with it on, a GPU the capacity does not have is a 400 at submit
    (tests/test_admission.py)."""
    client = make_app(PFCON_QUEUE="off").test_client()
    auth = login(client)
    assert submit(client, auth, job_form(jid, gpu_limit="1"), {"a": "x"}).status_code == 201
    compute = wait_terminal(client, auth, jid)["compute"]
    assert compute["status"] == "finishedWithError"
    assert compute["message"].startswith("failed to start") and "gpu" in compute["message"].lower()
    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204


def test_finished_job_whose_container_vanished_keeps_its_recorded_status(
    client, auth, jid: str, docker_client, storebase
) -> None:
    """Kubernetes deletes finished Jobs after a day: the answer must not change or become a 404."""
    assert submit(client, auth, job_form(jid), {"a": "x"}).status_code == 201
    finished = wait_terminal(client, auth, jid)["compute"]
    docker_client.containers.get(jid).remove(force=True)
    for _ in range(3):
        assert client.get(f"/api/v1/jobs/{jid}/", headers=auth).get_json()["compute"] == finished
    assert finished["status"] == "finishedSuccessfully" and "pl-copy: done" in finished["logs"]
    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204
    assert not (storebase / f"key-{jid}").exists()


def test_running_job_removed_behind_our_back_is_undefined(client, auth, jid: str, docker_client) -> None:
    assert submit(client, auth, job_form(jid, args=["--sleep", "30"]), {"a": "x"}).status_code == 201
    wait_started(client, auth, jid)
    docker_client.containers.get(jid).remove(force=True)

    def answer() -> dict | None:  # the engine's events reach the answer within a second
        compute = client.get(f"/api/v1/jobs/{jid}/", headers=auth).get_json()["compute"]
        return compute if compute["status"] != "started" else None

    compute = wait_for(answer, timeout=5, interval=0.05)
    assert compute["status"] == "undefined" and "no longer knows" in compute["message"], compute
    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204


def test_duplicate_live_jid_is_409_and_the_first_job_is_intact(client, auth, jid: str, storebase) -> None:
    assert submit(client, auth, job_form(jid, args=["--sleep", "3"]), {"a.txt": "first"}).status_code == 201
    second = submit(client, auth, job_form(jid), {"a.txt": "second", "extra.txt": "x"})
    assert second.status_code == 409 and "already exists" in second.get_json()["message"]
    assert (storebase / f"key-{jid}/incoming/a.txt").read_text() == "first"
    assert not (storebase / f"key-{jid}/incoming/extra.txt").exists()
    assert wait_terminal(client, auth, jid)["compute"]["status"] == "finishedSuccessfully"


def test_jid_can_be_reused_after_delete(client, auth, jid: str) -> None:
    assert submit(client, auth, job_form(jid), {"a": "1"}).status_code == 201
    wait_terminal(client, auth, jid)
    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204
    assert submit(client, auth, job_form(jid), {"a": "2"}).status_code == 201
    assert wait_terminal(client, auth, jid)["compute"]["status"] == "finishedSuccessfully"


def test_logs_tail_and_fs_plugin(make_app, jid: str) -> None:
    client = make_app(JOB_LOGS_TAIL=2).test_client()
    auth = login(client)
    form = job_form(
        jid,
        entrypoint=["sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; echo $0"],
        args=None,
        type="fs",
    )
    assert submit(client, auth, form, {"a": "1"}).status_code == 201
    compute = wait_terminal(client, auth, jid)["compute"]
    assert compute["cmd"] == "sh -c 'for i in 1 2 3 4 5; do echo line$i; done; echo $0' /share/outgoing"
    assert compute["logs"].split() == ["line5", "/share/outgoing"]


def test_container_user_and_home_workaround(make_app, jid: str, docker_client) -> None:
    client = make_app(
        CONTAINER_USER="4000-4009:5000", ENABLE_HOME_WORKAROUND="yes", SHM_SIZE="16"
    ).test_client()
    auth = login(client)
    form = job_form(
        jid, entrypoint=["sh", "-c", "id -u > $0/uid; echo $HOME > $0/home"], args=None, type="fs"
    )
    assert submit(client, auth, form, {"a": "1"}).status_code == 201
    assert wait_terminal(client, auth, jid)["compute"]["status"] == "finishedSuccessfully"
    with zipfile.ZipFile(io.BytesIO(client.get(f"/api/v1/jobs/{jid}/file/", headers=auth).data)) as archive:
        assert 4000 <= int(archive.read("uid")) <= 4009
        assert archive.read("home").strip() == b"/tmp"
    assert docker_client.containers.get(jid).attrs["HostConfig"]["ShmSize"] == 16 * 1024 * 1024


def test_remove_jobs_no_keeps_the_container(make_app, jid: str, docker_client, storebase) -> None:
    client = make_app(REMOVE_JOBS="no").test_client()
    auth = login(client)
    assert submit(client, auth, job_form(jid), {"a": "1"}).status_code == 201
    wait_terminal(client, auth, jid)
    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204
    assert not (storebase / f"key-{jid}").exists()
    assert docker_client.containers.get(jid).status == "exited"


def test_remove_jobs_no_stops_a_running_job_before_its_data_goes(
    make_app, jid: str, docker_client, storebase
) -> None:
    client = make_app(REMOVE_JOBS="no").test_client()
    auth = login(client)
    submit_ticking_job(client, auth, jid, storebase)
    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204
    container = docker_client.containers.get(jid)
    assert container.status == "exited"  # stopped before the data went, and kept
    assert not (storebase / f"key-{jid}").exists()
    assert container.attrs["State"]["ExitCode"] == 137  # killed by pfcon's stop, not ended by itself


def test_ignore_limits(make_app, jid: str, docker_client) -> None:
    client = make_app(IGNORE_LIMITS="yes").test_client()
    auth = login(client)
    assert submit(client, auth, job_form(jid), {"a": "1"}).status_code == 201
    wait_terminal(client, auth, jid)
    host = docker_client.containers.get(jid).attrs["HostConfig"]
    assert host["Memory"] == 0 and host["NanoCpus"] == 0


def test_a_job_deleted_through_another_worker_is_never_answered_from_cache(make_app, jid: str) -> None:
    """Two apps on one storeBase stand for two gunicorn workers."""
    first, second = make_app().test_client(), make_app().test_client()
    auth = login(first)
    assert submit(first, auth, job_form(jid), {"a": "1"}).status_code == 201
    assert wait_terminal(first, auth, jid)["compute"]["status"] == "finishedSuccessfully"
    assert first.get(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 200  # now cached in `first`
    assert second.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204
    assert first.get(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 404
