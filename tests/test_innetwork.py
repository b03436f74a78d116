"""In-network storage end to end: filesystem, fslink, swift and s3 on the real engine and Swift.

The same scenario for each storage — input with nested folders and a link file, a ``ds``
job, the output listing, delete — plus the security rules of in-network paths.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pfconclient.client import Client

from tests.api_helpers import login, submit, wait_terminal
from tests.helpers import TEST_LABEL, client_descriptors, job_form
from tests.live import live_pfcon
from tests.s3_fixtures import ENDPOINT, S3Objects, s3_bucket_fixture, s3_client_fixture, s3_env  # noqa: F401
from tests.swift_fixtures import (  # noqa: F401
    AUTH_URL,
    SwiftObjects,
    swift_conn_fixture,
    swift_container_fixture,
    swift_env,
)

pytestmark = pytest.mark.integration

OBJECT_STORES = ("swift", "s3")
STORAGES = ("filesystem", "fslink", *OBJECT_STORES)


def object_store(request: pytest.FixtureRequest, storage: str, **env: str) -> tuple[dict[str, str], Any]:
    """pfcon's environment for an object-store storage, and the client's view of the store."""
    if storage == "swift":
        conn, container = request.getfixturevalue("swift_conn"), request.getfixturevalue("swift_container")
        return swift_env(container, **env), SwiftObjects(conn, container)
    client, bucket = request.getfixturevalue("s3_client"), request.getfixturevalue("s3_bucket")
    return s3_env(bucket, **env), S3Objects(client, bucket)


class Data:
    """Puts a client's data where a storage reads it: files in storeBase, or objects in a store."""

    def __init__(self, storage: str, storebase: Path, objects: Any = None) -> None:
        self.storage, self.storebase, self.objects = storage, storebase, objects

    def put(self, files: dict[str, str]) -> None:
        for name, content in files.items():
            if self.objects is not None:
                self.objects.put(name, content.encode())
            else:
                path = self.storebase / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)

    def output(self, prefix: str) -> dict[str, bytes]:
        """What the client finds under its output dir afterwards."""
        if self.objects is not None:
            return self.objects.read(prefix)
        root = self.storebase / prefix
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def storage_data(
    request: pytest.FixtureRequest, storage: str, storebase: Path, **env: str
) -> tuple[dict[str, str], Data]:
    """pfcon's environment for any storage mode, and where the client's data goes for it."""
    if storage in OBJECT_STORES:
        store_env, objects = object_store(request, storage, **env)
        return store_env, Data(storage, storebase, objects)
    mode = {} if storage == "zipfile" else {"PFCON_INNETWORK": "true", "STORAGE_ENV": storage}
    return {**mode, **env}, Data(storage, storebase)


@pytest.fixture
def innetwork(request, make_app, storebase: Path) -> Callable[..., tuple]:
    """Build an in-network app for a storage: (client, auth, data)."""

    def build(storage: str, **env: str):
        full_env, data = storage_data(request, storage, storebase, **env)
        client = make_app(**full_env).test_client()
        return client, login(client), data

    return build


def _scenario_input(base: str) -> dict[str, str]:
    return {
        f"{base}/in/a.txt": "alpha",
        f"{base}/in/sub/deep/b.txt": "beta",
        f"{base}/in/ref.chrislink": f"{base}/shared/lib",
        f"{base}/shared/lib/one.txt": "one",
        f"{base}/shared/lib/nested/two.txt": "two",
    }


@pytest.mark.parametrize("storage", STORAGES)
def test_scenario_stage_run_list_delete(storage: str, innetwork, jid: str, storebase: Path) -> None:
    client, auth, data = innetwork(storage)
    base = f"home/{jid}"
    data.put(_scenario_input(base))
    form = job_form(jid, input_dirs=[f"{base}/in"], output_dir=f"{base}/out")
    answer = submit(client, auth, form)
    assert answer.status_code == 201, answer.get_json()
    staged = answer.get_json()["data"]
    traced = f"home_{jid}_shared_lib"  # a linked folder is copied under its path, '/' -> '_'
    if storage == "filesystem":  # mounted as it is: nothing copied, the link is data to the job
        assert staged["nfiles"] == 2 and staged["path"] == str(storebase / base / "in")
        expected = ["out-a.txt", "sub/deep/out-b.txt"]
    else:
        incoming = storebase / f"key-{jid}/incoming"
        assert staged["nfiles"] == 4 and staged["path"] == str(incoming)  # link files not counted
        assert (incoming / traced / "nested/two.txt").read_text() == "two"
        assert not list(incoming.rglob("*.chrislink"))
        expected = [
            f"{traced}/nested/out-two.txt",
            f"{traced}/out-one.txt",
            "out-a.txt",
            "sub/deep/out-b.txt",
        ]

    assert wait_terminal(client, auth, jid)["compute"]["status"] == "finishedSuccessfully"
    url = f"/api/v1/jobs/{jid}/file/?job_output_path={base}/out"
    listing = client.get(url, headers=auth)
    assert listing.status_code == 200 and listing.mimetype == "application/json"
    assert listing.get_json() == {"job_output_path": f"{base}/out", "rel_file_paths": expected}
    out = data.output(f"{base}/out")
    assert sorted(out) == expected and out["sub/deep/out-b.txt"] == b"beta"

    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204
    assert not (storebase / f"key-{jid}").exists()
    assert client.get(url, headers=auth).status_code == 404
    assert sorted(data.output(f"{base}/out")) == expected  # the client's output stays


@pytest.mark.parametrize(
    ("storage", "field", "value", "health"),
    [
        ("swift", "swift_auth_url", AUTH_URL, "Swift container"),
        ("s3", "s3_endpoint_url", ENDPOINT, "S3 bucket"),
    ],
)
def test_server_info_names_the_storage(innetwork, storage: str, field: str, value: str, health: str) -> None:
    client, auth, _ = innetwork(storage)
    info = client.get("/api/v1/jobs/", headers=auth).get_json()
    assert info["pfcon_innetwork"] is True and info["storage_env"] == storage
    assert info[field] == value
    answer = client.get("/api/v1/health/").get_json()
    assert answer["health"] == "OK" and health in answer["storage"]
    client, auth, _ = innetwork("fslink")
    assert not {"swift_auth_url", "s3_endpoint_url"} & set(
        client.get("/api/v1/jobs/", headers=auth).get_json()
    )


@pytest.mark.parametrize("storage", OBJECT_STORES)
def test_listing_uploads_nothing_twice_and_a_changed_file_again(
    storage: str, innetwork, jid: str, storebase: Path
) -> None:
    client, auth, data = innetwork(storage)
    base = f"home/{jid}"
    data.put({f"{base}/in/a.txt": "alpha", f"{base}/in/b.txt": "beta"})
    form = job_form(jid, input_dirs=[f"{base}/in"], output_dir=f"{base}/out")
    assert submit(client, auth, form).status_code == 201
    assert wait_terminal(client, auth, jid)["compute"]["status"] == "finishedSuccessfully"
    url = f"/api/v1/jobs/{jid}/file/?job_output_path={base}/out"

    assert client.get(url, headers=auth).status_code == 200
    first = data.objects.listing(f"{base}/out")
    assert sorted(first) == [f"{base}/out/out-a.txt", f"{base}/out/out-b.txt"]
    assert client.get(url, headers=auth).get_json()["rel_file_paths"] == ["out-a.txt", "out-b.txt"]
    assert data.objects.listing(f"{base}/out") == first  # nothing uploaded again

    # The same size, other bytes (a rerun's output): the checksum tells, and it is uploaded again.
    (storebase / f"key-{jid}/outgoing/out-a.txt").write_text("ALPHA")
    assert client.get(url, headers=auth).status_code == 200
    assert data.output(f"{base}/out") == {"out-a.txt": b"ALPHA", "out-b.txt": b"beta"}


@pytest.mark.parametrize("storage", ["fslink", *OBJECT_STORES])
def test_pfconclient_in_network(
    storage: str, request, docker_client, storebase: Path, tmp_path: Path, jid
) -> None:
    """python-pfconclient 3.3.0 as the ChRIS backend uses it in-network, against real gunicorn."""
    env, data = storage_data(request, storage, storebase, JOB_LABELS=TEST_LABEL)
    base = f"home/{jid}"
    data.put({f"{base}/in/a.txt": "alpha", f"{base}/in/d/b.txt": "beta"})
    with live_pfcon(storebase, tmp_path / "pfcon.log", env) as url:
        client = Client(url, Client.get_auth_token(url + "auth-token/", "pfcon", "pfcon1234"))
        assert client.get_server_info()["pfcon_innetwork"] is True
        descriptors = client_descriptors("c-", input_dirs=[f"{base}/in"], output_dir=f"{base}/out")
        answer = client.submit_job(jid, descriptors)
        assert answer["data"]["nfiles"] == 2
        client.poll_job_status(jid)
        assert client.get_job_status(jid)["compute"]["status"] == "finishedSuccessfully"
        listing = client.get_job_json_data(jid, f"{base}/out")
        assert listing == {"job_output_path": f"{base}/out", "rel_file_paths": ["c-a.txt", "d/c-b.txt"]}
        client.delete_job(jid)
    assert data.output(f"{base}/out") == {"c-a.txt": b"alpha", "d/c-b.txt": b"beta"}
