"""CONTAINER_ENV=slurm through the whole service: python-pfconclient 3.3.0 on a live gunicorn, and the API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pfconclient.client import Client

from tests.api_helpers import login, submit, wait_started
from tests.helpers import TEST_IMAGE, TEST_LABEL, client_descriptors, input_tree, job_form, wait_for
from tests.live import live_pfcon
from tests.slurm_fixtures import cancel_all, remove_slurm_containers, slurm_cluster  # noqa: F401

pytestmark = pytest.mark.integration

SLURM_ENV = {"CONTAINER_ENV": "slurm", "JOB_LABELS": TEST_LABEL, "TIMELIMIT_MINUTES": "10"}


@pytest.fixture
def server(slurm_cluster, docker_client, storebase: Path, tmp_path: Path):  # noqa: F811
    with live_pfcon(storebase, tmp_path / "pfcon.log", SLURM_ENV) as url:
        yield url
    remove_slurm_containers(docker_client)


def test_pfconclient_runs_a_job_through_slurm(server: str, tmp_path: Path, jid: str, storebase: Path) -> None:
    inputdir = input_tree(tmp_path / "in")
    token = Client.get_auth_token(server + "auth-token/", "pfcon", "pfcon1234")
    client = Client(server, token)
    assert client.get_server_info()["container_env"] == "slurm"
    descriptors = client_descriptors("slurm-")
    outdir = tmp_path / "out"
    outdir.mkdir()
    status = client.run_job(jid, descriptors, str(inputdir), str(outdir))
    assert status == "finishedSuccessfully"
    assert (outdir / "slurm-one.txt").read_text() == "one"
    assert (outdir / "nested/slurm-two.txt").read_text() == "two"
    assert not (storebase / f"key-{jid}").exists()  # run_job deletes the job at the end


def test_pfconclient_cli_polls_a_failing_job_through_slurm(server: str, tmp_path: Path, jid: str) -> None:
    token = Client.get_auth_token(server + "auth-token/", "pfcon", "pfcon1234")
    inputdir = tmp_path / "in"
    inputdir.mkdir()
    (inputdir / "a.txt").write_text("a")
    cli = [sys.executable, "-m", "pfconclient", server, "-a", token]
    submit = subprocess.run(
        [*cli, "submit", "--jid", jid, "--args=--no-such-flag", "--auid", "cube",
         "--number_of_workers", "1", "--cpu_limit", "500", "--memory_limit", "100", "--gpu_limit", "0",
         "--image", TEST_IMAGE, "--selfexec", "pl-copy", "--selfpath", "/usr/local/bin", "--execshell", "sh",
         "--type", "ds", str(inputdir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert submit.returncode == 0, submit.stderr
    poll = subprocess.run([*cli, "poll", "--jid", jid], capture_output=True, text=True, timeout=120)
    assert "finishedWithError" in poll.stdout, poll.stdout + poll.stderr
    delete = subprocess.run([*cli, "delete", "--jid", jid], capture_output=True, text=True, timeout=60)
    assert delete.returncode == 0 and f"Deleted job {jid}" in delete.stdout


@pytest.fixture
def slurm_app(slurm_cluster, docker_client, make_settings, build_app):  # noqa: F811
    app = build_app(make_settings(**SLURM_ENV))
    yield app
    service = app.extensions["pfcon"]
    service.starter.shutdown()  # nothing more is submitted to slurm
    cancel_all(service.backend)
    build_app.close()
    remove_slurm_containers(docker_client)


def test_api_status_logs_and_delete_of_a_running_slurm_job(slurm_app, storebase: Path, jid: str) -> None:
    client = slurm_app.test_client()
    auth = login(client)
    health = client.get("/api/v1/health/", headers=auth)
    assert health.status_code == 200 and "slurm" in json.dumps(health.get_json())
    form = job_form(jid, entrypoint=["sh"], args=["-c", "echo working; sleep 300"], type="fs")
    answer = submit(client, auth, form, {"x.txt": "x"})
    assert answer.status_code == 201, answer.get_json()

    def running():
        compute = client.get(f"/api/v1/jobs/{jid}/", headers=auth).get_json()["compute"]
        return compute["status"] == "started" and "working" in compute["logs"] and compute

    compute = wait_for(running, timeout=60)
    assert "slurm job" in compute["message"]
    slurm_id = json.loads((storebase / f"key-{jid}/slurm/job.json").read_text())["job_id"]
    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204
    state = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%T", "-j", slurm_id], capture_output=True, text=True
    )
    assert state.stdout.strip() == "CANCELLED"
    assert not (storebase / f"key-{jid}").exists()
    assert client.get(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 404


def test_api_answers_503_when_slurmctld_does_not(
    slurm_cluster,  # noqa: F811
    docker_client,
    make_settings,
    build_app,
    monkeypatch,
    storebase: Path,
    tmp_path: Path,
    jid: str,
) -> None:
    conf = Path("/etc/slurm/slurm.conf").read_text().replace("MessageTimeout=10", "MessageTimeout=2")
    (tmp_path / "slurm.conf").write_text(conf + "\nSlurmctldPort=9\n")  # nobody listens there
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "slurm.conf"))
    app = build_app(make_settings(**SLURM_ENV))
    client = app.test_client()
    auth = login(client)
    health = client.get("/api/v1/health/", headers=auth)
    assert health.status_code == 503 and "does not answer" in health.get_json()["message"]
    answer = submit(client, auth, job_form(jid), {"a.txt": "a"})
    assert answer.status_code == 503, answer.get_json()
    assert "slurm controller does not answer" in answer.get_json()["message"]
    assert not (storebase / f"key-{jid}").exists()


OPTION_LIKE_IMAGES = [
    "--volume=/etc:/hostetc",
    "-v/etc:/hostetc",
    "--privileged",
    "localhost/pfcon-busybox:1 --privileged",
    "localhost/pfcon-busybox:1\n--privileged",
    "localhost/pfcon-busybox:1\t",
    "localhost/pfcon-busybox:-x",
    "docker://localhost/pfcon-busybox:1",
    "/etc/passwd",
    "localhost/pfcon-busybox:1\x00",
]


def test_api_refuses_every_image_that_is_not_a_reference_before_slurm_sees_it(
    slurm_app, storebase: Path, jid: str
) -> None:
    client = slurm_app.test_client()
    auth = login(client)
    for image in OPTION_LIKE_IMAGES:
        answer = submit(client, auth, job_form(jid, image=image), {"a.txt": "a"})
        assert answer.status_code == 400, (image, answer.get_json())
        assert "image" in answer.get_json()["message"]
    assert not (storebase / f"key-{jid}").exists()
    queued = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%j"], capture_output=True, text=True)
    assert f"pfcon-{jid}" not in queued.stdout.split()


def test_remove_jobs_no_cancels_a_running_slurm_job_before_its_data_goes(
    slurm_cluster,  # noqa: F811
    docker_client,
    make_settings,
    build_app,
    storebase: Path,
    jid: str,
) -> None:
    app = build_app(make_settings(**SLURM_ENV, REMOVE_JOBS="no"))
    client = app.test_client()
    auth = login(client)
    form = job_form(jid, entrypoint=["sh"], args=["-c", "echo working; sleep 300"], type="fs")
    assert submit(client, auth, form, {"x.txt": "x"}).status_code == 201
    wait_for(lambda: (storebase / f"key-{jid}/slurm/started").exists(), timeout=60)
    wait_started(client, auth, jid)
    slurm_id = json.loads((storebase / f"key-{jid}/slurm/job.json").read_text())["job_id"]
    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204
    state = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%T", "-j", slurm_id], capture_output=True, text=True
    )
    assert state.stdout.strip() == "CANCELLED"
    assert not docker_client.containers.list(filters={"label": f"org.chrisproject.pfcon.batch.jid={jid}"})
    assert not (storebase / f"key-{jid}").exists()
    build_app.close()
    remove_slurm_containers(docker_client)
