"""In-network storage end to end: filesystem, fslink and swift on the real engine and Swift.

The same scenario for each storage — input with nested folders and a link file, a ``ds``
job, the output listing, delete — plus the security rules of in-network paths.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pfconclient.client import Client

from tests.api_helpers import login, submit, wait_terminal
from tests.helpers import TEST_LABEL, client_descriptors, job_form
from tests.live import live_pfcon
from tests.swift_fixtures import (  # noqa: F401
    AUTH_URL,
    swift_conn_fixture,
    swift_container_fixture,
    swift_env,
)

pytestmark = pytest.mark.integration

STORAGES = ("filesystem", "fslink", "swift")


class Data:
    """Puts a client's data where a storage reads it: files in storeBase, or Swift objects."""

    def __init__(self, storage: str, storebase: Path, conn=None, container: str | None = None) -> None:
        self.storage, self.storebase, self.conn, self.container = storage, storebase, conn, container

    def put(self, files: dict[str, str]) -> None:
        for name, content in files.items():
            if self.storage == "swift":
                self.conn.put_object(self.container, name, content.encode())
            else:
                path = self.storebase / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)

    def output(self, prefix: str) -> dict[str, bytes]:
        """What the client finds under its output dir afterwards."""
        if self.storage == "swift":
            _h, objects = self.conn.get_container(self.container, prefix=prefix + "/", full_listing=True)
            return {
                o["name"][len(prefix) + 1 :]: self.conn.get_object(self.container, o["name"])[1]
                for o in objects
            }
        root = self.storebase / prefix
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def innetwork(request, make_app, storebase: Path) -> Callable[..., tuple]:
    """Build an in-network app for a storage: (client, auth, data)."""

    def build(storage: str, **env: str):
        if storage == "swift":
            conn = request.getfixturevalue("swift_conn")
            container = request.getfixturevalue("swift_container")
            app = make_app(**swift_env(container, **env))
            data = Data(storage, storebase, conn, container)
        else:
            app = make_app(PFCON_INNETWORK="true", STORAGE_ENV=storage, **env)
            data = Data(storage, storebase)
        client = app.test_client()
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


def test_server_info_names_the_storage(innetwork) -> None:
    client, auth, _ = innetwork("swift")
    info = client.get("/api/v1/jobs/", headers=auth).get_json()
    assert info["pfcon_innetwork"] is True and info["storage_env"] == "swift"
    assert info["swift_auth_url"] == AUTH_URL
    health = client.get("/api/v1/health/").get_json()
    assert health["health"] == "OK" and "Swift container" in health["storage"]
    client, auth, _ = innetwork("fslink")
    assert "swift_auth_url" not in client.get("/api/v1/jobs/", headers=auth).get_json()


def test_swift_listing_uploads_nothing_twice(innetwork, jid: str) -> None:
    client, auth, data = innetwork("swift")
    conn, container = data.conn, data.container
    base = f"home/{jid}"
    data.put({f"{base}/in/a.txt": "alpha", f"{base}/in/b.txt": "beta"})
    form = job_form(jid, input_dirs=[f"{base}/in"], output_dir=f"{base}/out")
    assert submit(client, auth, form).status_code == 201
    assert wait_terminal(client, auth, jid)["compute"]["status"] == "finishedSuccessfully"
    url = f"/api/v1/jobs/{jid}/file/?job_output_path={base}/out"

    def stamps() -> dict[str, str]:
        _h, objects = conn.get_container(container, prefix=f"{base}/out/")
        return {o["name"]: o["last_modified"] for o in objects}

    assert client.get(url, headers=auth).status_code == 200
    first = stamps()
    assert sorted(first) == [f"{base}/out/out-a.txt", f"{base}/out/out-b.txt"]
    assert client.get(url, headers=auth).get_json()["rel_file_paths"] == ["out-a.txt", "out-b.txt"]
    assert stamps() == first  # nothing uploaded again


@pytest.mark.parametrize("storage", ["fslink", "swift"])
def test_pfconclient_in_network(
    storage: str, request, docker_client, storebase: Path, tmp_path: Path, jid
) -> None:
    """python-pfconclient 3.3.0 as the ChRIS backend uses it in-network, against real gunicorn."""
    env = {"JOB_LABELS": TEST_LABEL, "PFCON_INNETWORK": "true", "STORAGE_ENV": storage}
    data = Data(storage, storebase)
    if storage == "swift":
        data.conn = request.getfixturevalue("swift_conn")
        data.container = env["SWIFT_CONTAINER_NAME"] = request.getfixturevalue("swift_container")
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
