"""Hostile and malformed requests: each gets its 4xx JSON answer and leaves nothing behind."""

from __future__ import annotations

import io
import stat
import time
import zipfile
from pathlib import Path

import docker
import jwt
import pytest

from tests.helpers import job_form, make_zip

pytestmark = pytest.mark.integration

JID = "t-hostile"


def _symlink_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("evil")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc")
    return buffer.getvalue()


BOMB = make_zip({"zeros": b"\x00" * (32 * 1024 * 1024)})

# (case, form overrides (None drops a field), data_file bytes or None, expected status, message fragment)
CASES = [
    ("no jid", {"jid": None}, make_zip({"a": "1"}), 400, "jid"),
    ("jid traversal", {"jid": "../../etc"}, make_zip({"a": "1"}), 400, "jid"),
    ("jid absolute", {"jid": "/tmp/x"}, make_zip({"a": "1"}), 400, "jid"),
    ("jid too long", {"jid": "j" * 200}, make_zip({"a": "1"}), 400, "jid"),
    ("no entrypoint", {"entrypoint": None}, make_zip({"a": "1"}), 400, "entrypoint"),
    ("cpu not a number", {"cpu_limit": "lots"}, make_zip({"a": "1"}), 400, "cpu_limit"),
    ("negative memory", {"memory_limit": "-5"}, make_zip({"a": "1"}), 400, "memory_limit"),
    # beyond what the job store's columns hold (with the queue off it was an overflow, a 500)
    ("cpu beyond the store", {"cpu_limit": str(10**30)}, make_zip({"a": "1"}), 400, "cpu_limit"),
    ("gpus beyond the store", {"gpu_limit": str(2**31)}, make_zip({"a": "1"}), 400, "gpu_limit"),
    ("two workers", {"number_of_workers": "2"}, make_zip({"a": "1"}), 400, "number_of_workers"),
    ("bad type", {"type": "xx"}, make_zip({"a": "1"}), 400, "type"),
    ("env without =", {"env": ["NOEQUALS"]}, make_zip({"a": "1"}), 400, "env"),
    ("jid twice", {"jid": [JID, "other"]}, make_zip({"a": "1"}), 400, "more than once"),
    ("missing image", {"image": "localhost/absent:1"}, make_zip({"a": "1"}), 400, "localhost/absent:1"),
    ("no data_file", {}, None, 400, "data_file"),
    ("not a zip", {}, b"plain text, not a zip" * 50, 400, "not a valid zip"),
    ("zip bomb", {}, BOMB, 400, "zip bomb"),
    ("dotdot entry", {}, make_zip({"ok": "1", "../../escape.txt": "x"}), 400, "data_file"),
    ("absolute entry", {}, make_zip({"/etc/cron.d/x": "x"}), 400, "data_file"),
    ("symlink entry", {}, _symlink_zip(), 400, "symbolic link"),
    ("link escapes", {}, make_zip({"a.chrislink": "../../../etc"}), 400, "link"),
    ("link absolute", {}, make_zip({"a.chrislink": "/etc/passwd"}), 400, "link"),
    ("link dangling", {}, make_zip({"a.chrislink": "nothing/here"}), 400, "does not exist"),
    ("too many entries", {}, make_zip({f"f{i}": "x" for i in range(30)}), 413, "entries"),
]


def _leftovers(storebase: Path) -> list[str]:
    """Everything in storeBase but the job store (whose records these tests check themselves)."""
    return sorted(
        p.relative_to(storebase).as_posix()
        for p in storebase.rglob("*")
        if p.relative_to(storebase).parts[0] != ".pfcon"
    )


@pytest.fixture
def hostile_app(make_app):
    return make_app(MAX_ZIP_ENTRIES=20, MAX_UPLOAD_BYTES=4 * 1024 * 1024)


@pytest.mark.parametrize(
    ("case", "overrides", "data", "status", "fragment"), CASES, ids=[c[0] for c in CASES]
)
def test_hostile_submission(
    hostile_app, storebase, docker_client, case, overrides, data, status, fragment
) -> None:
    client = hostile_app.test_client()
    token = client.post("/api/v1/auth-token/", json={"pfcon_user": "pfcon", "pfcon_password": "pfcon1234"})
    form = job_form(**{"jid": JID, **overrides})
    if data is not None:
        form["data_file"] = (io.BytesIO(data), "in.zip")
    answer = client.post(
        "/api/v1/jobs/",
        data=form,
        headers={"Authorization": f"Bearer {token.get_json()['token']}"},
        content_type="multipart/form-data",
    )
    assert answer.status_code == status, answer.get_json()
    assert answer.is_json and fragment in answer.get_json()["message"]
    assert _leftovers(storebase) == [".pfcon-uploads"]
    assert hostile_app.extensions["pfcon"].store.latest(JID) is None  # no record either
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(JID)


@pytest.mark.parametrize("field", ["cpu_limit", "memory_limit", "gpu_limit", "number_of_workers"])
def test_counts_beyond_the_store_are_400_also_with_the_queue_off(make_app, storebase, field) -> None:
    """Without the queue's capacity check, nothing else stood between such a count and the
    job store's INTEGER column: an OverflowError, a 500."""
    client = make_app(PFCON_QUEUE="off").test_client()
    token = client.post("/api/v1/auth-token/", json={"pfcon_user": "pfcon", "pfcon_password": "pfcon1234"})
    form = {**job_form(JID, **{field: str(2**31)}), "data_file": (io.BytesIO(make_zip({"a": "1"})), "in.zip")}
    answer = client.post(
        "/api/v1/jobs/",
        data=form,
        headers={"Authorization": f"Bearer {token.get_json()['token']}"},
        content_type="multipart/form-data",
    )
    assert answer.status_code == 400 and field in answer.get_json()["message"], answer.get_json()
    assert _leftovers(storebase) == [".pfcon-uploads"]


def test_oversize_upload_is_413(hostile_app, storebase) -> None:
    client = hostile_app.test_client()
    token = client.post("/api/v1/auth-token/", json={"pfcon_user": "pfcon", "pfcon_password": "pfcon1234"})
    form = job_form(JID, data_file=(io.BytesIO(b"\x00" * (5 * 1024 * 1024)), "big.zip"))
    answer = client.post(
        "/api/v1/jobs/",
        data=form,
        headers={"Authorization": f"Bearer {token.get_json()['token']}"},
        content_type="multipart/form-data",
    )
    assert answer.status_code == 413 and "limit" in answer.get_json()["message"]
    assert _leftovers(storebase) == [".pfcon-uploads"]


def _expired_token(secret: str) -> str:
    return jwt.encode({"pfcon_user": "pfcon", "exp": int(time.time()) - 10}, secret, algorithm="HS256")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "Missing authorization header."),
        ("Basic cGZjb246cGZjb24xMjM0", "Invalid authorization header."),
        ("Bearer garbage", "Invalid authorization token."),
        ("expired", "Expired authorization token."),
        ("forged", "Invalid authorization token."),
    ],
)
def test_bad_tokens_are_401_on_every_protected_endpoint(app, header, message) -> None:
    secret = app.extensions["pfcon"].settings.secret_key
    if header == "expired":
        header = f"Bearer {_expired_token(secret)}"
    elif header == "forged":
        forged = jwt.encode(
            {"pfcon_user": "pfcon", "exp": int(time.time()) + 60}, "x" * 32, algorithm="HS256"
        )
        header = f"Bearer {forged}"
    headers = {"Authorization": header} if header else {}
    client = app.test_client()
    for method, path in [
        ("GET", "/api/v1/jobs/"),
        ("POST", "/api/v1/jobs/"),
        ("GET", "/api/v1/jobs/x1/"),
        ("DELETE", "/api/v1/jobs/x1/"),
        ("GET", "/api/v1/jobs/x1/file/"),
    ]:
        answer = client.open(path, method=method, headers=headers)
        assert answer.status_code == 401, (method, path)
        assert answer.get_json() == {"message": message}


@pytest.mark.parametrize(
    "body",
    [
        {"pfcon_user": "pfcon", "pfcon_password": "wrong"},
        {"pfcon_user": "pfcon"},
    ],
)
def test_bad_logins_are_400(client, body) -> None:
    answer = client.post("/api/v1/auth-token/", json=body)
    assert answer.status_code == 400 and answer.is_json


def test_malformed_json_login_is_400(client) -> None:
    answer = client.post("/api/v1/auth-token/", data="{not json", content_type="application/json")
    assert answer.status_code == 400 and answer.is_json


@pytest.mark.parametrize("jid", ["..", ".hidden", "a%20b", "-x"])
def test_bad_jids_in_urls_are_400(client, auth, jid) -> None:
    for method, suffix in [("GET", ""), ("DELETE", ""), ("GET", "file/")]:
        answer = client.open(f"/api/v1/jobs/{jid}/{suffix}", method=method, headers=auth)
        assert answer.status_code == 400 and "jid" in answer.get_json()["message"]


def test_unknown_paths_and_methods_answer_json(client, auth) -> None:
    assert client.get("/api/v1/nope/", headers=auth).get_json()["message"]
    answer = client.put("/api/v1/jobs/", headers=auth)
    assert answer.status_code == 405 and answer.is_json


def test_paths_work_without_trailing_slash(client, auth) -> None:
    assert client.get("/api/v1/health").status_code == 200
    assert client.get("/api/v1/jobs", headers=auth).get_json()["storage_env"] == "zipfile"
    missing = client.get("/api/v1/jobs/t-nope", headers=auth)
    assert missing.status_code == 404 and missing.is_json


FIELD = b'--x\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
MALFORMED = [
    ("no boundary", "multipart/form-data", FIELD % (b"jid", b"j1") + b"--x--\r\n", 400, "jid"),
    (
        "truncated file part",
        "multipart/form-data; boundary=x",
        FIELD % (b"jid", b"j1")
        + b'--x\r\nContent-Disposition: form-data; name="data_file"; filename="a.zip"\r\n\r\nPK\x03\x04abc',
        400,
        "entrypoint",
    ),
    ("garbage", "multipart/form-data; boundary=x", b"\x00\x01garbage" * 100, 400, "jid"),
    (
        "huge field",
        "multipart/form-data; boundary=x",
        FIELD % (b"jid", b"a" * (5 << 20)) + b"--x--\r\n",
        413,
        "form",
    ),
    (
        "many parts",
        "multipart/form-data; boundary=x",
        FIELD % (b"args", b"v") * 1500 + b"--x--\r\n",
        413,
        "parts",
    ),
    ("json body", "application/json", b'{"jid": "x"}', 400, "entrypoint"),
    ("urlencoded garbage", "application/x-www-form-urlencoded", b"%%%&&&==", 400, "jid"),
]


@pytest.mark.parametrize(
    ("case", "content_type", "body", "status", "fragment"), MALFORMED, ids=[m[0] for m in MALFORMED]
)
def test_malformed_bodies(client, auth, storebase, case, content_type, body, status, fragment) -> None:
    answer = client.post("/api/v1/jobs/", data=body, headers={**auth, "Content-Type": content_type})
    assert answer.status_code == status and fragment in answer.get_json()["message"]
    assert _leftovers(storebase) == [".pfcon-uploads"]
