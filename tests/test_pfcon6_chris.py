"""ChRIS 7's call sequence (PFCON6.md 1.3) replayed against real gunicorn, per storage mode.

Tokens live one second here, so the replay meets expired tokens and re-authenticates on the
401s as CUBE does. The output path holds a ``+`` (ChRIS usernames may), which the client
sends unencoded.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.chris_like import ChrisLike, plugin_fields
from tests.helpers import TEST_IMAGE, TEST_LABEL, make_zip, wait_for
from tests.live import live_pfcon
from tests.s3_fixtures import s3_bucket_fixture, s3_client_fixture  # noqa: F401
from tests.swift_fixtures import swift_conn_fixture, swift_container_fixture  # noqa: F401
from tests.test_innetwork import OBJECT_STORES, Data, storage_data

pytestmark = pytest.mark.integration

FLAGS = {  # storage -> (pfcon_innetwork, requires_copy_job, requires_upload_job)
    "zipfile": (False, False, False),
    "filesystem": (True, False, False),
    "fslink": (True, True, False),
    "swift": (True, True, True),
    "s3": (True, True, True),
}
COPIES = ("fslink", *OBJECT_STORES)
CHRIS_ENV = {"JOB_LABELS": TEST_LABEL, "AUTH_TOKEN_LIFETIME": "1"}


@contextmanager
def fslink_chris(storebase: Path, tmp_path: Path, files: dict[str, str]) -> Iterator[ChrisLike]:
    """A registered ChRIS-like client of a live fslink pfcon whose storeBase holds ``files``."""
    Data("fslink", storebase).put(files)
    env = {**CHRIS_ENV, "PFCON_INNETWORK": "true", "STORAGE_ENV": "fslink"}
    with live_pfcon(storebase, tmp_path / "pfcon.log", env) as url:
        chris = ChrisLike(url)
        chris.register()
        yield chris


@pytest.mark.parametrize("storage", list(FLAGS))
def test_chris_sequence(
    storage: str, request, docker_client, storebase: Path, tmp_path: Path, jid: str
) -> None:
    env, data = storage_data(request, storage, storebase, **CHRIS_ENV)
    feed = f"home/chris+user/feeds/feed_{jid}"
    inputs, output = f"{feed}/pl-dircopy_1/data", f"{feed}/pl-copy_2/data"
    files = {"a.txt": "alpha", "sub/b.txt": "beta"}
    if storage != "zipfile":
        data.put({f"{inputs}/{name}": content for name, content in files.items()})
    if storage in ("filesystem", "fslink"):
        (storebase / output).mkdir(parents=True)  # CUBE makes the output dir first
    with live_pfcon(storebase, tmp_path / "pfcon.log", env) as url:
        chris = ChrisLike(url)
        info = chris.register()
        assert (info["pfcon_innetwork"], info["requires_copy_job"], info["requires_upload_job"]) == FLAGS[
            storage
        ]
        assert info["storage_env"] == storage and info["server_version"]
        if storage == "s3":
            assert info["s3_endpoint_url"] == env["S3_ENDPOINT_URL"]
        for kind in ("copy", "upload", "delete"):
            assert chris.call("GET", f"{kind}jobs/").json() == info
        plugin = plugin_fields(jid, "out-", TEST_IMAGE)
        wait_for(chris.token_expired, timeout=10)  # a fast run still meets an expired token
        seen = chris.run(jid, plugin, [inputs], output, make_zip(files))

    assert seen["plugin"]["status"] == "finishedSuccessfully", seen["plugin"]
    assert seen["submitted"]["compute"]["status"] in ("notStarted", "started", "finishedSuccessfully")
    expected = ["out-a.txt", "sub/out-b.txt"]
    if storage == "zipfile":
        assert seen["submitted"]["data"]["nfiles"] == 2
        with zipfile.ZipFile(io.BytesIO(seen["zip"])) as archive:
            assert sorted(archive.namelist()) == expected
    else:
        assert seen["files"] == {"job_output_path": output, "rel_file_paths": expected}
        assert sorted(data.output(output)) == expected
    if storage in COPIES:
        assert seen["submitted"]["data"] == {}
        assert seen["copy"]["message"].startswith("copied 2 files")
    if storage in OBJECT_STORES:
        assert seen["upload"]["status"] == "finishedSuccessfully"
        assert seen["upload"]["message"].startswith("uploaded 2 files")
        assert seen["plugin_again"]["status"] == "finishedSuccessfully"
    assert seen["delete"]["status"] == "finishedSuccessfully", seen["delete"]
    assert chris.logins >= 2 and any(call.status == 401 for call in chris.calls)  # re-authenticated
    assert not (storebase / f"key-{jid}").exists()
    assert not (storebase / f".pfcon/operations/{jid}").exists()
    assert not docker_client.containers.list(all=True, filters={"name": jid, "label": TEST_LABEL})


def test_chris_cancels_a_running_plugin(docker_client, storebase: Path, tmp_path: Path, jid: str) -> None:
    """CUBE's cancel is a POST deletejobs/: the plugin is stopped, recorded, then its data deleted."""
    inputs, output = f"home/chris/feeds/feed_{jid}/in", f"home/chris/feeds/feed_{jid}/out"
    with fslink_chris(storebase, tmp_path, {f"{inputs}/a.txt": "alpha"}) as chris:
        chris.post("copy", {"jid": jid, "input_dirs": [inputs], "output_dir": output})
        assert chris.poll("copy", jid)["status"] == "finishedSuccessfully"
        plugin = plugin_fields(jid, "out-", TEST_IMAGE, args=["--sleep", "60"])
        chris.post("plugin", {"jid": jid, **plugin, "output_dir": output})
        while chris.call("GET", f"pluginjobs/{jid}/").json()["compute"]["status"] != "started":
            pass
        deleted = chris.post("delete", {"jid": jid})["compute"]
        assert deleted["status"] in ("notStarted", "started", "finishedSuccessfully")
        done = chris.poll("delete", jid, timeout=60)
        assert done["status"] == "finishedSuccessfully" and "stopped its plugin job" in done["message"]
        plugin_state = chris.call("GET", f"pluginjobs/{jid}/").json()["compute"]
        assert plugin_state["status"] == "finishedWithError"
        assert plugin_state["message"].startswith("cancelled")
        assert not docker_client.containers.list(all=True, filters={"name": jid, "label": TEST_LABEL})
        assert not (storebase / f"key-{jid}/incoming").exists()
        chris.delete_all(jid)


def test_chris_ordering_rules_and_hazards(docker_client, storebase: Path, tmp_path: Path, jid: str) -> None:
    """What ChRIS meets when it calls out of order or late: 409s, records that stay."""
    inputs, output = f"home/chris/feeds/feed_{jid}/in", f"home/chris/feeds/feed_{jid}/out"
    with fslink_chris(storebase, tmp_path, {f"{inputs}/a.txt": "alpha"}) as chris:
        plugin = {"jid": jid, **plugin_fields(jid, "out-", TEST_IMAGE), "output_dir": output}
        early = chris.call("POST", "pluginjobs/", data=plugin)
        assert early.status_code == 409 and early.json()["message"].startswith("No copy job found")
        # a delete of a job pfcon holds nothing of is skipped, and its GET keeps answering
        ghost = f"{jid}-ghost"
        assert chris.post("delete", {"jid": ghost})["compute"]["message"] == "deleteSkipped"
        for _ in range(2):
            assert chris.poll("delete", ghost)["status"] == "finishedSuccessfully"
        chris.post("copy", {"jid": jid, "input_dirs": [inputs], "output_dir": output})
        chris.poll("copy", jid)
        chris.post("plugin", plugin)
        final = chris.poll("plugin", jid)
        docker_client.containers.get(jid).remove(force=True)  # the engine forgets it
        again = chris.post("plugin", plugin)["compute"]  # idempotent: the recorded end, not a re-run
        assert again["status"] == final["status"] == "finishedSuccessfully"
        assert chris.call("GET", f"pluginjobs/{jid}/").json()["compute"]["status"] == "finishedSuccessfully"
        chris.post("delete", {"jid": jid})
        assert chris.poll("delete", jid)["status"] == "finishedSuccessfully"
        chris.delete_all(jid)
        chris.call("DELETE", f"deletejobs/{ghost}/")
    assert not list(storebase.glob("key-*"))
