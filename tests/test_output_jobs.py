"""Real jobs on dockerd write hostile outputs; download, listing, staging and delete stay safe.

The job runs as uid 1001 (``CONTAINER_USER``, as pfcon's image runs its jobs as its own uid)
and leaves: 1 100 nested folders, a Latin-1 name, ``chmod 000`` folders and file, read-only,
no-search and sticky folders, a symlink out and a FIFO. The service under test runs as root
here (it talks to the root-owned docker socket); the delete is also run as uid 1001 on the same
storeBase, in a child process, which is what a non-root pfcon does.
"""

from __future__ import annotations

import io
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pfcon.safetree import MAX_DEPTH, remove_tree
from pfcon.storebase import StoreBase
from tests.api_helpers import login, submit, wait_terminal
from tests.helpers import as_user, job_form, shared_tmp_dir
from tests.s3_fixtures import s3_bucket_fixture, s3_client_fixture  # noqa: F401
from tests.swift_fixtures import swift_conn_fixture, swift_container_fixture  # noqa: F401
from tests.test_innetwork import OBJECT_STORES, object_store
from tests.test_output_tree import UID

pytestmark = pytest.mark.integration

HOSTILE = r"""
set -e
cd /share/outgoing
echo plain > plain.txt
printf latin > "$(printf 'caf\351.txt')"
mkdir deep && cd deep
i=0; while [ $i -lt 1100 ]; do mkdir d; cd d; i=$((i+1)); done
echo bottom > bottom.txt
cd /share/outgoing
mkdir -p locked/inner && echo x > locked/inner/f && chmod 000 locked/inner locked
mkdir ro && echo x > ro/f && chmod 500 ro
mkdir noexec && echo x > noexec/f && chmod 600 noexec
mkdir sticky && chmod 1777 sticky && echo x > sticky/f
echo x > zero && chmod 000 zero
ln -s /etc escape
mkfifo fifo
"""


@pytest.fixture
def storebase() -> Iterator[Path]:
    """storeBase where uid 1001 can reach it (pytest's own folders are private to root)."""
    with shared_tmp_dir() as top:
        (top / "storeBase").mkdir()
        yield top / "storeBase"


def _hostile_form(jid: str, **extra) -> dict:
    return job_form(jid, entrypoint=["sh", "-c", HOSTILE, "job"], args=[], **extra)


def _delete_as_pfcon_user(storebase: Path, jid: str) -> None:
    """What ``DELETE`` does to the data, as a non-root pfcon owning storeBase."""
    subprocess.run(["chown", "-R", "-h", f"{UID}:{UID}", str(storebase)], check=True)
    assert as_user(UID, lambda: 0 if StoreBase(storebase).remove_job(jid) else 5) == 0
    assert not (storebase / f"key-{jid}").exists()


def _filesystem_client(make_app, storebase: Path):
    """A filesystem-storage app whose jobs run as uid 1001, and an input folder ``home/in``."""
    client = make_app(PFCON_INNETWORK="true", STORAGE_ENV="filesystem", CONTAINER_USER=f"{UID}:{UID}")
    client = client.test_client()
    (storebase / "home/in").mkdir(parents=True)
    (storebase / "home/in/a.txt").write_text("a")
    return client, login(client)


def test_zip_download_and_delete_of_a_hostile_output(make_app, storebase: Path, jid: str) -> None:
    client = make_app(CONTAINER_USER=f"{UID}:{UID}").test_client()
    auth = login(client)
    assert submit(client, auth, _hostile_form(jid), files={"in.txt": "x"}).status_code == 201
    assert wait_terminal(client, auth, jid)["compute"]["status"] == "finishedSuccessfully"

    answer = client.get(f"/api/v1/jobs/{jid}/file/", headers=auth)
    assert answer.status_code == 200
    with zipfile.ZipFile(io.BytesIO(answer.data)) as archive:
        assert archive.testzip() is None
        names = set(archive.namelist())
        assert {"plain.txt", "café.txt", "ro/f", "sticky/f"} <= names
        assert not names & {"escape", "fifo"} and not any(n.endswith("bottom.txt") for n in names)
        assert max(n.count("/") for n in names) <= MAX_DEPTH
        assert archive.read("café.txt") == b"latin"

    _delete_as_pfcon_user(storebase, jid)
    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204  # the container
    assert sorted(p.name for p in storebase.iterdir()) == [".pfcon", ".pfcon-uploads"]  # and the job store


def test_innetwork_listing_and_staging_of_a_hostile_output(make_app, storebase: Path, jid: str) -> None:
    """filesystem lists it; fslink staging it as the next job's input is a 400, not a 500."""
    client, auth = _filesystem_client(make_app, storebase)
    form = _hostile_form(jid, input_dirs=["home/in"], output_dir="home/out")
    assert submit(client, auth, form).status_code == 201
    assert wait_terminal(client, auth, jid)["compute"]["status"] == "finishedSuccessfully"
    listing = client.get(f"/api/v1/jobs/{jid}/file/?job_output_path=home/out", headers=auth)
    assert listing.status_code == 200, listing.get_json()
    paths = listing.get_json()["rel_file_paths"]
    assert {"plain.txt", "café.txt", "ro/f", "sticky/f"} <= set(paths)
    assert all((storebase / "home/out" / p).is_file() for p in paths)  # each listed path opens

    fslink = make_app(PFCON_INNETWORK="true", STORAGE_ENV="fslink").test_client()
    refused = submit(fslink, login(fslink), job_form(f"{jid}-next", input_dirs=["home/out"], output_dir="o2"))
    assert refused.status_code == 400 and f"deeper than {MAX_DEPTH} folders" in refused.get_json()["message"]
    assert not (storebase / f"key-{jid}-next").exists() and not (storebase / "o2").exists()

    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204
    subprocess.run(["chown", "-R", "-h", f"{UID}:{UID}", str(storebase)], check=True)
    assert as_user(UID, lambda: remove_tree(storebase / "home") or 0) == 0  # the client's copy, too
    assert sorted(p.name for p in storebase.iterdir()) == [".pfcon", ".pfcon-uploads"]  # and the job store


def test_existing_output_dir_keeps_its_owner_and_mode(make_app, storebase: Path, jid: str) -> None:
    client, auth = _filesystem_client(make_app, storebase)
    (storebase / "home/theirs").mkdir()
    (storebase / "home/theirs").chmod(0o750)
    form = job_form(jid, input_dirs=["home/in"], output_dir="home/theirs")
    assert submit(client, auth, form).status_code == 201
    info = (storebase / "home/theirs").stat()
    assert (info.st_mode & 0o7777, info.st_uid) == (0o750, 0)
    wait_terminal(client, auth, jid)
    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204

    form = job_form(f"{jid}-new", input_dirs=["home/in"], output_dir="home/fresh")
    assert submit(client, auth, form).status_code == 201
    assert (storebase / "home/fresh").stat().st_uid == UID  # made for this job: handed to its user
    wait_terminal(client, auth, f"{jid}-new")
    assert client.delete(f"/api/v1/jobs/{jid}-new/", headers=auth).status_code == 204


@pytest.mark.parametrize("storage", OBJECT_STORES)
def test_object_store_listing_of_a_hostile_output(
    storage: str, request, make_app, storebase: Path, jid: str
) -> None:
    env, objects = object_store(request, storage, CONTAINER_USER=f"{UID}:{UID}")
    client = make_app(**env).test_client()
    auth = login(client)
    objects.put(f"{jid}/in/a.txt", b"a")
    form = _hostile_form(jid, input_dirs=[f"{jid}/in"], output_dir=f"{jid}/out")
    assert submit(client, auth, form).status_code == 201
    assert wait_terminal(client, auth, jid)["compute"]["status"] == "finishedSuccessfully"
    url = f"/api/v1/jobs/{jid}/file/?job_output_path={jid}/out"
    for _ in range(2):  # the second call uploads nothing and answers the same
        listing = client.get(url, headers=auth)
        assert listing.status_code == 200, listing.get_json()
    paths = listing.get_json()["rel_file_paths"]
    assert {"plain.txt", "café.txt", "ro/f", "sticky/f"} <= set(paths)
    stored = objects.read(f"{jid}/out")
    assert sorted(stored) == paths
    assert stored["café.txt"] == b"latin"
    _delete_as_pfcon_user(storebase, jid)
    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204
