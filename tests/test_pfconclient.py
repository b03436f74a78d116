"""python-pfconclient 3.3.0 (what the ChRIS backend uses), library and CLI, against real gunicorn."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pfconclient.client import Client

from tests.helpers import TEST_LABEL, client_descriptors, input_tree
from tests.live import live_pfcon

pytestmark = pytest.mark.integration

IMAGE = "localhost/pfcon-busybox:1"


@pytest.fixture
def server(docker_client, storebase: Path, tmp_path: Path):
    with live_pfcon(storebase, tmp_path / "pfcon.log", {"JOB_LABELS": TEST_LABEL}) as url:
        yield url


@pytest.fixture
def inputdir(tmp_path: Path) -> Path:
    return input_tree(tmp_path / "in")


def test_client_library_runs_a_job_end_to_end(
    server: str, inputdir: Path, tmp_path: Path, jid, storebase
) -> None:
    token = Client.get_auth_token(server + "auth-token/", "pfcon", "pfcon1234")
    client = Client(server, token)
    info = client.get_server_info()
    assert info["pfcon_innetwork"] is False and info["storage_env"] == "zipfile"
    descriptors = client_descriptors("lib-", image=IMAGE)
    outdir = tmp_path / "out"
    outdir.mkdir()
    status = client.run_job(jid, descriptors, str(inputdir), str(outdir))
    assert status == "finishedSuccessfully"
    assert (outdir / "lib-one.txt").read_text() == "one"
    assert (outdir / "nested/lib-two.txt").read_text() == "two"
    assert not (storebase / f"key-{jid}").exists()  # run_job deletes the job at the end


def _cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pfconclient", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_command_line_client_end_to_end(server: str, inputdir: Path, tmp_path: Path, jid: str) -> None:
    auth = _cli(server, "auth", "--pfcon_user", "pfcon", "--pfcon_password", "pfcon1234")
    assert auth.returncode == 0, auth.stderr
    token = re.search(r"token: (\S+)", auth.stdout).group(1)
    outdir = tmp_path / "cli-out"
    run = _cli(
        server, "-a", token, "run",
        "--jid", jid, "--args", "--prefix cli-", "--auid", "cube",
        "--number_of_workers", "1", "--cpu_limit", "1000", "--memory_limit", "200", "--gpu_limit", "0",
        "--image", IMAGE, "--selfexec", "pl-copy", "--selfpath", "/usr/local/bin", "--execshell", "sh",
        "--type", "ds", str(inputdir), str(outdir),
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"Job {jid} status: finishedSuccessfully" in run.stdout
    assert (outdir / "cli-one.txt").read_text() == "one"
    assert (outdir / "nested/cli-two.txt").read_text() == "two"


def test_command_line_submit_status_download_delete(
    server: str, inputdir: Path, tmp_path: Path, jid: str
) -> None:
    token = Client.get_auth_token(server + "auth-token/", "pfcon", "pfcon1234")
    submit = _cli(
        server, "-a", token, "submit",
        "--jid", jid, "--args", "--prefix s-", "--auid", "cube", "--args_path_flags=--unused,--other",
        "--number_of_workers", "1", "--cpu_limit", "1000", "--memory_limit", "200", "--gpu_limit", "0",
        "--image", IMAGE, "--selfexec", "pl-copy", "--selfpath", "/usr/local/bin", "--execshell", "sh",
        "--type", "ds", str(inputdir),
    )  # fmt: skip
    assert submit.returncode == 0, submit.stderr
    poll = _cli(server, "-a", token, "poll", "--jid", jid)
    assert "finishedSuccessfully" in poll.stdout, poll.stdout + poll.stderr
    status = _cli(server, "-a", token, "status", "--jid", jid)
    assert f"Job {jid} status: finishedSuccessfully" in status.stdout
    zipdir = tmp_path / "zipped"
    download = _cli(server, "-a", token, "download", "--jid", jid, "--zip", str(zipdir))
    assert download.returncode == 0 and (zipdir / f"{jid}.zip").stat().st_size > 0
    delete = _cli(server, "-a", token, "delete", "--jid", jid)
    assert delete.returncode == 0 and f"Deleted job {jid}" in delete.stdout
    again = _cli(server, "-a", token, "status", "--jid", jid)
    assert again.returncode != 0 and "not found" in again.stderr
