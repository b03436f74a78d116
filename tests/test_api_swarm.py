"""The jobs API end to end with CONTAINER_ENV=swarm: the Flask app and python-pfconclient."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import docker
import pytest
from pfconclient.client import Client

from pfcon.compute import build_backend
from pfcon.settings import SettingsError, load_settings
from tests.api_helpers import login, submit, submit_ticking_job, wait_terminal
from tests.helpers import TEST_LABEL, TEST_LABELS, client_descriptors, job_form, wait_for
from tests.live import live_pfcon
from tests.swarm_fixtures import (  # noqa: F401 - fixtures
    no_leftover_services_fixture,
    remove_test_services,
    swarm_client_fixture,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def swarm_app(make_app, swarm_client):
    return make_app(CONTAINER_ENV="swarm")


@pytest.fixture
def api(swarm_app):
    client = swarm_app.test_client()
    return client, login(client)


def _compute(client, auth, jid: str) -> dict:
    return client.get(f"/api/v1/jobs/{jid}/", headers=auth).get_json()["compute"]


def _service(swarm_client: docker.DockerClient, jid: str) -> dict:
    return swarm_client.api.inspect_service(jid)["Spec"]


def test_health_and_server_info_name_swarm(api) -> None:
    client, auth = api
    health = client.get("/api/v1/health/").get_json()
    assert health["health"] == "OK" and health["engine"].startswith("swarm ")
    assert client.get("/api/v1/jobs/", headers=auth).get_json()["container_env"] == "swarm"


def test_submit_poll_download_delete(api, jid: str, storebase: Path, swarm_client) -> None:
    client, auth = api
    answer = submit(client, auth, job_form(jid, env=["GREETING=hi"]), {"a.txt": "alpha", "dir/b.txt": "beta"})
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json()["compute"]["status"] == "notstarted"
    final = wait_terminal(client, auth, jid)["compute"]
    assert final["status"] == "finishedSuccessfully", final
    assert final["cmd"] == "pl-copy --prefix out- /share/incoming /share/outgoing"
    assert final["logs"].rstrip().endswith("pl-copy: done") and final["timestamp"]
    spec = _service(swarm_client, jid)
    container = spec["TaskTemplate"]["ContainerSpec"]
    assert "GREETING=hi" in container["Env"] and spec["Labels"]["pfcon.test"] == TEST_LABEL.split("=")[1]
    assert spec["TaskTemplate"]["Resources"]["Limits"] == {"NanoCPUs": 10**9, "MemoryBytes": 200 * 1024**2}
    sources = {m["Target"]: m["Source"] for m in container["Mounts"]}
    assert sources["/share/incoming"] == str(storebase / f"key-{jid}/incoming")

    out = client.get(f"/api/v1/jobs/{jid}/file/", headers=auth)
    with zipfile.ZipFile(io.BytesIO(out.data)) as archive:
        assert sorted(archive.namelist()) == ["dir/out-b.txt", "out-a.txt"]

    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204
    assert not (storebase / f"key-{jid}").exists()
    with pytest.raises(docker.errors.NotFound):
        swarm_client.api.inspect_service(jid)
    assert client.get(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 404
    assert submit(client, auth, job_form(jid), {"a": "again"}).status_code == 201  # the jid is free again
    assert wait_terminal(client, auth, jid)["compute"]["status"] == "finishedSuccessfully"


def test_failing_job(api, jid: str) -> None:
    client, auth = api
    assert submit(client, auth, job_form(jid, args=["--fail", "7"]), {"a": "x"}).status_code == 201
    compute = wait_terminal(client, auth, jid)["compute"]
    assert compute["status"] == "finishedWithError" and "exited with code 7" in compute["message"]
    assert "failing on request" in compute["logs"]


@pytest.mark.parametrize(
    ("form", "field"),
    [({"gpu_limit": "1"}, "gpu_limit"), ({"cpu_limit": "1000000"}, "cpu_limit"), ({"jid": "has.dot"}, "jid")],
)
def test_jobs_the_swarm_cannot_run_are_400_and_leave_nothing(api, jid: str, storebase, form, field) -> None:
    client, auth = api
    answer = submit(client, auth, job_form(jid) | form, {"a": "x"})
    assert answer.status_code == 400 and answer.get_json()["message"].startswith(field)
    assert not any(storebase.glob("key-*"))


def test_duplicate_live_jid_is_409(api, jid: str) -> None:
    client, auth = api
    assert submit(client, auth, job_form(jid, args=["--sleep", "3"]), {"a": "first"}).status_code == 201
    wait_for(lambda: _compute(client, auth, jid)["status"] == "started", timeout=20)  # the service exists
    second = submit(client, auth, job_form(jid), {"a": "second"})
    assert second.status_code == 409 and "already exists" in second.get_json()["message"]


def test_container_user_shm_and_logs_tail(make_app, swarm_client, jid: str) -> None:
    client = make_app(
        CONTAINER_ENV="swarm", CONTAINER_USER="4000-4009:5000", SHM_SIZE="16", JOB_LOGS_TAIL="2"
    ).test_client()
    auth = login(client)
    script = "id -u > $0/uid; df -k /dev/shm | tail -1 > $0/shm; for i in 1 2 3; do echo line$i; done"
    form = job_form(jid, entrypoint=["sh", "-c", script], args=None, type="fs")
    assert submit(client, auth, form, {"a": "1"}).status_code == 201
    compute = wait_terminal(client, auth, jid)["compute"]
    assert compute["status"] == "finishedSuccessfully", compute
    assert compute["logs"].split() == ["line2", "line3"]
    with zipfile.ZipFile(io.BytesIO(client.get(f"/api/v1/jobs/{jid}/file/", headers=auth).data)) as archive:
        assert 4000 <= int(archive.read("uid")) <= 4009
        assert archive.read("shm").split()[1] == b"16384"
    assert _service(swarm_client, jid)["TaskTemplate"]["ContainerSpec"]["User"].endswith(":5000")


def test_service_removed_behind_our_back_after_it_finished_keeps_its_status(
    api, jid: str, swarm_client
) -> None:
    client, auth = api
    assert submit(client, auth, job_form(jid), {"a": "x"}).status_code == 201
    finished = wait_terminal(client, auth, jid)["compute"]
    swarm_client.api.remove_service(jid)
    assert _compute(client, auth, jid) == finished
    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204


def test_service_removed_behind_our_back_while_it_runs_is_undefined(api, jid: str, swarm_client) -> None:
    client, auth = api
    assert submit(client, auth, job_form(jid, args=["--sleep", "30"]), {"a": "x"}).status_code == 201
    wait_for(lambda: _compute(client, auth, jid)["status"] == "started", timeout=60)
    swarm_client.api.remove_service(jid)
    compute = wait_for(lambda: (c := _compute(client, auth, jid))["status"] == "undefined" and c, timeout=5)
    assert "no longer knows" in compute["message"]
    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204


def test_pfconclient_runs_a_job_on_swarm(swarm_client, storebase: Path, tmp_path: Path, jid: str) -> None:
    """python-pfconclient 3.3.0 against real gunicorn serving CONTAINER_ENV=swarm."""
    inputdir, outdir = tmp_path / "in", tmp_path / "out"
    (inputdir / "nested").mkdir(parents=True)
    outdir.mkdir()
    (inputdir / "nested/two.txt").write_text("two")
    env = {"JOB_LABELS": TEST_LABEL, "CONTAINER_ENV": "swarm"}
    with live_pfcon(storebase, tmp_path / "pfcon.log", env) as url:
        client = Client(url, Client.get_auth_token(url + "auth-token/", "pfcon", "pfcon1234"))
        assert client.get_server_info()["container_env"] == "swarm"
        descriptors = client_descriptors("sw-", cpu_limit=500, memory_limit=64)
        assert client.run_job(jid, descriptors, str(inputdir), str(outdir)) == "finishedSuccessfully"
    assert (outdir / "nested/sw-two.txt").read_text() == "two"
    assert not (storebase / f"key-{jid}").exists()
    with pytest.raises(docker.errors.NotFound):
        swarm_client.api.inspect_service(jid)  # run_job's delete removed the service


def test_docker_local_volume_as_storebase(swarm_client, build_app, jid: str) -> None:
    """COMPUTE_VOLUME_TYPE=docker_local_volume: the job's bind mounts come from the volume's folder."""
    volume = swarm_client.volumes.create(f"pfcon-test-{jid}", labels=TEST_LABELS)
    try:
        mountpoint = volume.attrs["Mountpoint"]
        env = {
            "APPLICATION_MODE": "development",
            "CONTAINER_ENV": "swarm",
            "COMPUTE_VOLUME_TYPE": "docker_local_volume",
            "VOLUME_NAME": volume.name,
            "STOREBASE_MOUNT": mountpoint,  # pfcon runs on the host here
            "JOB_LABELS": TEST_LABEL,
        }
        app = build_app(load_settings(env))
        client = app.test_client()
        auth = login(client)
        assert submit(client, auth, job_form(jid), {"in.txt": "through a volume"}).status_code == 201
        assert wait_terminal(client, auth, jid)["compute"]["status"] == "finishedSuccessfully"
        mounts = _service(swarm_client, jid)["TaskTemplate"]["ContainerSpec"]["Mounts"]
        assert {m["Source"] for m in mounts} == {
            f"{mountpoint}/key-{jid}/incoming",
            f"{mountpoint}/key-{jid}/outgoing",
        }
        assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204
    finally:
        build_app.close()  # its job store is in the volume
        remove_test_services(swarm_client)
        volume.remove(force=True)


def test_kubernetes_pvc_is_refused_with_swarm() -> None:
    settings = load_settings(
        {
            "CONTAINER_ENV": "swarm",
            "COMPUTE_VOLUME_TYPE": "kubernetes_pvc",
            "VOLUME_NAME": "v",
            "APPLICATION_MODE": "development",
        }
    )
    with pytest.raises(
        SettingsError, match="COMPUTE_VOLUME_TYPE: 'kubernetes_pvc' does not work with CONTAINER_ENV=swarm"
    ):
        build_backend(settings)


def test_remove_jobs_no_stops_the_task_and_keeps_the_service(
    make_app, swarm_client, jid: str, storebase: Path
) -> None:
    client = make_app(CONTAINER_ENV="swarm", REMOVE_JOBS="no").test_client()
    auth = login(client)
    submit_ticking_job(client, auth, jid, storebase)
    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204
    assert not (storebase / f"key-{jid}").exists()
    assert _service(swarm_client, jid)["Mode"]["Replicated"]["Replicas"] == 0  # kept, scaled down
    running = {"label": f"com.docker.swarm.service.name={jid}", "status": "running"}
    wait_for(lambda: not swarm_client.containers.list(filters=running), timeout=30)
    remove_test_services(swarm_client)
