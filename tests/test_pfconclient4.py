"""python-pfconclient 4.0.0 (ChRIS 7's client), library and CLI, against real gunicorn.

The library runs one plugin instance in each storage mode exactly as ChRIS orders the
calls (server info, copy, plugin, upload, file, delete, the four DELETEs); the CLI logs in,
submits (with the stray ``data_file`` part its ``submit`` always sends), reads a status and
deletes. See :mod:`tests.pfconclient4` for how 4.0.0 runs beside 3.3.0.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import TEST_IMAGE, TEST_LABEL, client_descriptors
from tests.live import live_pfcon
from tests.pfconclient4 import cli, run_flow
from tests.s3_fixtures import s3_bucket_fixture, s3_client_fixture  # noqa: F401
from tests.swift_fixtures import swift_conn_fixture, swift_container_fixture  # noqa: F401
from tests.test_innetwork import OBJECT_STORES, Data, storage_data

pytestmark = pytest.mark.integration

STORAGES = ("zipfile", "filesystem", "fslink", *OBJECT_STORES)
COPIES = ("fslink", *OBJECT_STORES)


@pytest.mark.parametrize("storage", STORAGES)
def test_library_runs_chris_sequence(
    storage: str, request, docker_client, storebase: Path, tmp_path: Path, jid: str
) -> None:
    env, data = storage_data(request, storage, storebase, JOB_LABELS=TEST_LABEL)
    inputs, output = f"home/chris/feeds/{jid}/in", f"home/chris/feeds/{jid}/out"
    data.put({f"{inputs}/a.txt": "alpha", f"{inputs}/d/b.txt": "beta"})
    zip_dir = storebase / inputs  # out-of-network: the client zips a local folder
    plugin = client_descriptors("v4-", image=TEST_IMAGE, memory_limit=300)
    with live_pfcon(storebase, tmp_path / "pfcon.log", env) as url:
        seen = run_flow(
            url=url, jid=jid, plugin=plugin, input_dirs=[inputs], output_dir=output, zip_dir=str(zip_dir)
        )
    info = seen["info"]
    assert info["storage_env"] == storage and info["server_version"]
    assert info["requires_copy_job"] is (storage in COPIES)
    assert info["requires_upload_job"] is (storage in OBJECT_STORES)
    if storage == "s3":
        assert info["s3_endpoint_url"] == env["S3_ENDPOINT_URL"]
    assert seen["plugin"] == "finishedSuccessfully"
    assert seen["plugin_submit"]["compute"]["status"] in ("notStarted", "started", "finishedSuccessfully")
    if storage == "zipfile":
        assert seen["files"] == {"d/v4-b.txt": "beta", "v4-a.txt": "alpha"}
        assert seen["plugin_submit"]["data"]["nfiles"] == 2
    else:
        assert seen["files"] == {"job_output_path": output, "rel_file_paths": ["d/v4-b.txt", "v4-a.txt"]}
        assert data.output(output) == {"d/v4-b.txt": b"beta", "v4-a.txt": b"alpha"}
    if storage in COPIES:
        assert seen["copy"] == "finishedSuccessfully" and seen["plugin_submit"]["data"] == {}
    if storage in OBJECT_STORES:
        assert seen["upload"] == "finishedSuccessfully" and seen["plugin_again"] == "finishedSuccessfully"
    assert seen["delete"] == "finishedSuccessfully"
    assert not (storebase / f"key-{jid}").exists()
    assert not (storebase / f".pfcon/operations/{jid}").exists()


def test_cli_auth_submit_status_delete(docker_client, storebase: Path, tmp_path: Path, jid: str) -> None:
    data = Data("fslink", storebase)
    data.put({f"home/c/{jid}/in/a.txt": "alpha"})
    env = {"JOB_LABELS": TEST_LABEL, "PFCON_INNETWORK": "true", "STORAGE_ENV": "fslink"}
    with live_pfcon(storebase, tmp_path / "pfcon.log", env) as url:
        auth = cli(url, "auth", "--pfcon_user", "pfcon", "--pfcon_password", "pfcon1234")
        assert auth.returncode == 0, auth.stderr
        token = re.search(r"token: (\S+)", auth.stdout).group(1)

        def run(*args: str):
            return cli(url, "-a", token, *args)

        submit = run("submit", "--job_type", "copy", "--jid", jid, "--input_dirs", f"home/c/{jid}/in",
                     "--output_dir", f"home/c/{jid}/out")  # fmt: skip
        assert submit.returncode == 0 and "'compute'" in submit.stdout, submit.stdout + submit.stderr
        deadline = time.monotonic() + 30
        while (
            "finishedSuccessfully" not in (status := run("status", "--job_type", "copy", "--jid", jid)).stdout
        ):
            assert time.monotonic() < deadline, status.stdout + status.stderr
        assert f"Job {jid} status: finishedSuccessfully" in status.stdout
        assert (storebase / f"key-{jid}/incoming/a.txt").read_text() == "alpha"
        submit = run("submit", "--job_type", "delete", "--jid", jid)
        assert submit.returncode == 0, submit.stderr
        while "finishedSuccessfully" not in run("status", "--job_type", "delete", "--jid", jid).stdout:
            assert time.monotonic() < deadline
        for kind in ("copy", "plugin", "delete"):
            deleted = run("delete", "--job_type", kind, "--jid", jid)
            assert deleted.returncode == 0 and f"Deleted job {jid}" in deleted.stdout, deleted.stderr
        gone = run("status", "--job_type", "copy", "--jid", jid)
        assert gone.returncode != 0 and "No copy job found" in gone.stderr
        bad = cli(url, "-a", "not-a-token", "status", "--job_type", "plugin", "--jid", jid)
        assert bad.returncode != 0 and "Invalid authorization token" in bad.stderr


def test_both_client_generations_against_one_service(
    docker_client, storebase: Path, tmp_path: Path, jid: str
) -> None:
    """ChRIS 6 (pfconclient 3.3.0, classic jobs/) and ChRIS 7 (4.0.0, pfcon 6) at once."""
    from pfconclient.client import Client  # 3.3.0, this environment's own

    data = Data("fslink", storebase)
    old, new = f"{jid}-v3", f"{jid}-v4"
    for name in (old, new):
        data.put({f"home/g/{name}/in/a.txt": name})
    env = {"JOB_LABELS": TEST_LABEL, "PFCON_INNETWORK": "true", "STORAGE_ENV": "fslink"}
    classic: dict = {}

    def chris6(url: str) -> None:
        client = Client(url, Client.get_auth_token(url + "auth-token/", "pfcon", "pfcon1234"))
        out = f"home/g/{old}/out"
        descriptors = client_descriptors("v3-", input_dirs=[f"home/g/{old}/in"], output_dir=out)
        classic["submitted"] = client.submit_job(old, descriptors)["compute"]["status"]
        client.poll_job_status(old)
        classic["listing"] = client.get_job_json_data(old, out)
        client.delete_job(old)

    with live_pfcon(storebase, tmp_path / "pfcon.log", env) as url:
        thread = threading.Thread(target=chris6, args=(url,))
        thread.start()
        plugin = client_descriptors("v4-", image=TEST_IMAGE, memory_limit=300)
        seen = run_flow(url=url, jid=new, plugin=plugin, input_dirs=[f"home/g/{new}/in"],
                        output_dir=f"home/g/{new}/out", zip_dir="")  # fmt: skip
        thread.join(timeout=120)
    assert classic["submitted"] in ("notstarted", "started", "finishedSuccessfully")  # 5.3's spelling
    assert classic["listing"]["rel_file_paths"] == ["v3-a.txt"]
    assert seen["files"]["rel_file_paths"] == ["v4-a.txt"] and seen["delete"] == "finishedSuccessfully"
    assert data.output(f"home/g/{old}/out") == {"v3-a.txt": old.encode()}
    assert data.output(f"home/g/{new}/out") == {"v4-a.txt": new.encode()}
    assert not list(storebase.glob("key-*"))
