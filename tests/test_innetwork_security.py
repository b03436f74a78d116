"""The security rules of in-network storage, each a test, on the real engine, Swift and S3.

Every ``input_dirs``, ``output_dir``, ``job_output_path``, link target and object key
stays inside storeBase (or the Swift container, the S3 bucket): otherwise 400, and nothing is
written or mounted. Links may not point at the job's output or its ancestors; loops end. Link files a
job writes into its output are never followed, and a listing only shows the job's own output.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api_helpers import login, submit, wait_terminal
from tests.helpers import job_form
from tests.s3_fixtures import s3_bucket_fixture, s3_client_fixture  # noqa: F401
from tests.swift_fixtures import SwiftObjects, swift_conn_fixture, swift_container_fixture, swift_env  # noqa: F401
from tests.test_innetwork import OBJECT_STORES, Data, object_store

pytestmark = pytest.mark.integration


@pytest.fixture
def fs_app(make_app):
    def build(storage: str):
        client = make_app(PFCON_INNETWORK="true", STORAGE_ENV=storage).test_client()
        return client, login(client)

    return build


def _write(root: Path, files: dict[str, str]) -> None:
    Data("fslink", root).put(files)


def shell_job(jid: str, script: str, input_dir: str, output_dir: str) -> dict:
    """An ``fs`` job running ``sh -c script`` with ``$0`` its output folder."""
    shell = {"entrypoint": ["sh", "-c", script], "args": None, "type": "fs"}
    return job_form(jid, input_dirs=[input_dir], output_dir=output_dir, **shell)


def _leftovers(storebase: Path) -> list[str]:
    """Everything under storeBase but the seeded data, pfcon's uploads folder and its job store."""
    return sorted(
        p.relative_to(storebase).as_posix()
        for p in storebase.rglob("*")
        if not p.relative_to(storebase).as_posix().startswith((".pfcon", "data"))
    )


@pytest.mark.parametrize("storage", ["filesystem", "fslink"])
@pytest.mark.parametrize(
    ("input_dir", "output_dir", "message"),
    [
        ("/etc", "out", "relative path"),
        ("data/../../etc", "out", "relative path"),
        ("escape", "out", "outside"),  # a symlink in storeBase pointing out of it
        ("data/in", "/tmp/out", "relative path"),
        ("data/in", "../out", "relative path"),
        ("data/in", "escape/out", "outside"),
        ("data/in", "key-other/outgoing", "pfcon's own"),
        ("key-other/incoming", "out", "pfcon's own"),
        ("data/in", "data/in/out", "overlap"),
        ("data", "data/in", "overlap"),
        ("data/missing", "out", "not a folder"),
    ],
)
def test_paths_outside_storebase_are_400_and_nothing_is_written(
    storage, input_dir, output_dir, message, fs_app, storebase: Path, tmp_path: Path, jid: str
) -> None:
    client, auth = fs_app(storage)
    _write(storebase, {"data/in/a.txt": "a"})
    (tmp_path / "outside").mkdir()
    (storebase / "escape").symlink_to(tmp_path / "outside")
    (storebase / "key-other/incoming").mkdir(parents=True)
    before = _leftovers(storebase)
    answer = submit(client, auth, job_form(jid, input_dirs=[input_dir], output_dir=output_dir))
    assert answer.status_code == 400, answer.get_json()
    assert message in answer.get_json()["message"]
    assert _leftovers(storebase) == before and not list((tmp_path / "outside").iterdir())


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("/etc", "relative path"),
        ("../secret", "relative path"),
        ("escape", "outside"),
        ("data/out", "output"),  # the job's own output dir
        ("data", "output"),  # an ancestor of it
        ("data/out/sub", "output"),  # inside it
        ("key-other", "pfcon's own"),
        ("data/nothing", "does not exist"),
    ],
)
def test_fslink_link_targets_stay_inside_and_away_from_the_output(
    target, message, fs_app, storebase: Path, tmp_path: Path, jid: str
) -> None:
    client, auth = fs_app("fslink")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/secret.txt").write_text("s")
    (storebase / "escape").symlink_to(tmp_path / "outside")
    _write(storebase, {"data/in/a.txt": "a", "data/in/l.chrislink": target, "key-other/job.json": "{}"})
    answer = submit(client, auth, job_form(jid, input_dirs=["data/in"], output_dir="data/out"))
    assert answer.status_code == 400, answer.get_json()
    assert message in answer.get_json()["message"]
    assert not (storebase / f"key-{jid}").exists() and not (storebase / "data/out").exists()


def test_fslink_inputs_that_clash_are_400(fs_app, storebase: Path, jid: str) -> None:
    client, auth = fs_app("fslink")
    _write(storebase, {"data/a/x": "a file", "data/b/x/y.txt": "a folder x"})
    form = job_form(jid, input_dirs=["data/a", "data/b"], output_dir="data/out")
    answer = submit(client, auth, form)
    assert answer.status_code == 400 and "data/b" in answer.get_json()["message"]
    assert not (storebase / f"key-{jid}").exists()


def test_fslink_link_loops_end(fs_app, storebase: Path, jid: str) -> None:
    client, auth = fs_app("fslink")
    _write(
        storebase,
        {
            "data/in/start.chrislink": "lib/a",
            "lib/a/one.txt": "1",
            "lib/a/to_b.chrislink": "lib/b",
            "lib/b/two.txt": "2",
            "lib/b/to_a.chrislink": "lib/a",
            "lib/b/to_in.chrislink": "data/in",
        },
    )
    answer = submit(client, auth, job_form(jid, input_dirs=["data/in"], output_dir="data/out"))
    assert answer.status_code == 201, answer.get_json()
    incoming = storebase / f"key-{jid}/incoming"
    files = sorted(p.relative_to(incoming).as_posix() for p in incoming.rglob("*") if p.is_file())
    assert files == ["lib_a/lib_b/two.txt", "lib_a/one.txt"]  # loops back to lib/a and data/in cut
    assert answer.get_json()["data"]["nfiles"] == 2


@pytest.mark.parametrize("storage", ["filesystem", "fslink"])
def test_job_written_links_are_never_followed_and_listing_is_own_output(
    storage, fs_app, storebase: Path, jid: str
) -> None:
    client, auth = fs_app(storage)
    _write(storebase, {"home/alice/in/a.txt": "a", "home/bob/private/secret.txt": "bob's"})
    plant = "echo home/bob/private > $0/evil.chrislink; ln -s /etc/passwd $0/pw; echo ok > $0/ok.txt"
    assert submit(client, auth, shell_job(jid, plant, "home/alice/in", "home/alice/out")).status_code == 201
    assert wait_terminal(client, auth, jid)["compute"]["status"] == "finishedSuccessfully"
    url = f"/api/v1/jobs/{jid}/file/?job_output_path="
    for other in ("home/bob/private", "home/alice", "home/alice/out/..", "/home/alice/out", ""):
        assert client.get(url + other, headers=auth).status_code == 400, other
    assert client.get(f"/api/v1/jobs/{jid}/file/", headers=auth).status_code == 400
    listing = client.get(url + "home/alice/out/", headers=auth).get_json()
    assert listing["rel_file_paths"] == ["ok.txt"]  # no link file, no symlink
    assert not (storebase / "home/alice/out/evil.chrislink").exists()

    # A later job taking that output as its input gets none of bob's data.
    second = f"{jid}-2"
    answer = submit(client, auth, job_form(second, input_dirs=["home/alice/out"], output_dir="home/alice/o2"))
    assert answer.status_code == 201, answer.get_json()
    staged = storebase / f"key-{second}/incoming" if storage == "fslink" else storebase / "home/alice/out"
    assert not [p for p in staged.rglob("*") if "secret" in p.name or "bob" in p.name]


@pytest.mark.parametrize("storage", OBJECT_STORES)
def test_job_written_links_are_never_uploaded(storage, request, make_app, storebase: Path, jid: str) -> None:
    """A job's link file and symlink stay out of the store: no later staging can follow them."""
    env, objects = object_store(request, storage)
    client = make_app(**env).test_client()
    auth = login(client)
    base = f"home/{jid}"
    Data(storage, storebase, objects).put({f"{base}/in/a.txt": "a", f"{base}/bob/secret.txt": "bob's"})
    plant = f"echo {base}/bob > $0/evil.chrislink; ln -s /etc/passwd $0/pw; echo ok > $0/ok.txt"
    assert submit(client, auth, shell_job(jid, plant, f"{base}/in", f"{base}/out")).status_code == 201
    assert wait_terminal(client, auth, jid)["compute"]["status"] == "finishedSuccessfully"
    listing = client.get(f"/api/v1/jobs/{jid}/file/?job_output_path={base}/out", headers=auth).get_json()
    assert listing["rel_file_paths"] == ["ok.txt"]
    assert objects.read(f"{base}/out") == {"ok.txt": b"ok\n"}


@pytest.mark.parametrize("storage", OBJECT_STORES)
def test_output_paths_too_long_for_an_object_name_do_not_break_the_listing(
    storage, request, make_app, storebase: Path, jid: str
) -> None:
    """Object names end at 1 024 bytes: a deeper path is left out (not uploaded, not listed)."""
    env, objects = object_store(request, storage)
    client = make_app(**env).test_client()
    auth = login(client)
    base = f"home/{jid}"
    Data(storage, storebase, objects).put({f"{base}/in/a.txt": "a"})
    deep = "/".join(["d" * 250] * 4)  # with "/f.txt", 1 009 bytes below the output prefix
    plant = f"mkdir -p $0/{deep} && echo x > $0/{deep}/f.txt && echo ok > $0/ok.txt"
    assert submit(client, auth, shell_job(jid, plant, f"{base}/in", f"{base}/out")).status_code == 201
    assert wait_terminal(client, auth, jid)["compute"]["status"] == "finishedSuccessfully"
    answer = client.get(f"/api/v1/jobs/{jid}/file/?job_output_path={base}/out", headers=auth)
    assert answer.status_code == 200 and answer.get_json()["rel_file_paths"] == ["ok.txt"]
    assert objects.read(f"{base}/out") == {"ok.txt": b"ok\n"}


@pytest.mark.parametrize("storage", OBJECT_STORES)
def test_object_keys_and_link_targets_stay_inside(
    storage: str, request, make_app, storebase: Path, jid: str
) -> None:
    env, objects = object_store(request, storage)
    client = make_app(**env).test_client()
    auth = login(client)
    base = f"home/{jid}"
    data = Data(storage, storebase, objects)
    data.put({f"{base}/good/a.txt": "a", f"{base}/bad/../../../escape.txt": "x"})
    cases = [
        ([f"{base}/bad"], f"{base}/out", "relative path"),  # an object key with '..'
        (["/abs"], f"{base}/out", "relative path"),
        ([f"{base}/../x"], f"{base}/out", "relative path"),
        ([f"{base}/good"], f"{base}/good/out", "overlap"),
        ([f"{base}/good"], "../out", "relative path"),
    ]
    for i, (inputs, output, message) in enumerate(cases):
        answer = submit(client, auth, job_form(f"{jid}-{i}", input_dirs=inputs, output_dir=output))
        assert answer.status_code == 400 and message in answer.get_json()["message"], (
            inputs,
            answer.get_json(),
        )
        assert not (storebase / f"key-{jid}-{i}").exists()
    data.put({f"{base}/clash/x": "file", f"{base}/clash/x/y": "under a file"})
    answer = submit(
        client, auth, job_form(f"{jid}-c", input_dirs=[f"{base}/clash"], output_dir=f"{base}/out")
    )
    assert answer.status_code == 400 and "clashes" in answer.get_json()["message"]
    assert not (storebase / f"key-{jid}-c").exists()
    for i, target in enumerate([f"{base}/out", base, f"{base}/out/sub", "../x", f"{base}/nothing"]):
        data.put({f"{base}/l{i}/ref.chrislink": target})
        answer = submit(
            client, auth, job_form(f"{jid}-l{i}", input_dirs=[f"{base}/l{i}"], output_dir=f"{base}/out")
        )
        assert answer.status_code == 400, (target, answer.get_json())
        assert not (storebase / f"key-{jid}-l{i}").exists()
    assert not (storebase / "escape.txt").exists()


def test_swift_outage_is_503_with_a_message(make_app, storebase: Path, jid: str) -> None:
    env = swift_env("users", SWIFT_AUTH_URL="http://127.0.0.1:9/auth/v1.0")  # nothing listens on 9
    client = make_app(**env).test_client()
    auth = login(client)
    answer = submit(client, auth, job_form(jid, input_dirs=["home/x/in"], output_dir="home/x/out"))
    assert answer.status_code == 503 and "Swift" in answer.get_json()["message"]
    assert not (storebase / f"key-{jid}").exists()
    health = client.get("/api/v1/health/")
    assert health.status_code == 503 and "Swift" in health.get_json()["message"]


def test_swift_outage_during_listing_is_503_and_a_retry_uploads(
    make_app, swift_conn, swift_container, storebase: Path, jid: str
) -> None:
    """The same storeBase served by a pfcon whose Swift is gone: the listing is 503, nothing lost."""
    working = make_app(**swift_env(swift_container)).test_client()
    auth = login(working)
    base = f"home/{jid}"
    Data("swift", storebase, SwiftObjects(swift_conn, swift_container)).put({f"{base}/in/a.txt": "a"})
    assert (
        submit(working, auth, job_form(jid, input_dirs=[f"{base}/in"], output_dir=f"{base}/out")).status_code
        == 201
    )
    assert wait_terminal(working, auth, jid)["compute"]["status"] == "finishedSuccessfully"
    dead = make_app(**swift_env(swift_container, SWIFT_AUTH_URL="http://127.0.0.1:9/auth/v1.0")).test_client()
    url = f"/api/v1/jobs/{jid}/file/?job_output_path={base}/out"
    answer = dead.get(url, headers=login(dead))
    assert answer.status_code == 503 and "Swift" in answer.get_json()["message"]
    assert working.get(url, headers=auth).get_json()["rel_file_paths"] == ["out-a.txt"]
