"""What a body may cost: logins never unpack or write, only the submit route takes ``data_file``,
forms are bounded in total, and every refusal leaves storeBase as it was (real dockerd)."""

from __future__ import annotations

import io
import json
import os
import zipfile

import pytest

from tests.helpers import declare_entry_size, job_form, make_zip
from tests.test_api_hostile import _leftovers  # everything in storeBase but the job store

pytestmark = pytest.mark.integration

LOGIN = {"pfcon_user": "pfcon", "pfcon_password": "pfcon1234"}


def _multipart(parts: list[tuple[str, bytes, str | None]]) -> tuple[bytes, str]:
    """A multipart body from (name, value, filename or None) in this order."""
    chunks = []
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        chunks.append(f"--b0\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n")
    return b"".join(chunks) + b"--b0--\r\n", "multipart/form-data; boundary=b0"


def _form_parts(jid: str) -> list[tuple[str, bytes, str | None]]:
    parts = []
    for key, value in job_form(jid).items():
        for item in value if isinstance(value, list) else [value]:
            parts.append((key, str(item).encode(), None))
    return parts


def test_login_never_unpacks_or_writes_a_file_part(client, storebase) -> None:
    """Every file part of any body once went through the zip extractor before auth."""
    body, content_type = _multipart(
        [
            ("pfcon_user", b"pfcon", None),
            ("pfcon_password", b"pfcon1234", None),
            ("data_file", make_zip({"a/" * 50 + "f": "x"}), "in.zip"),
        ]
    )
    answer = client.post("/api/v1/auth-token/", data=body, content_type=content_type)
    assert answer.status_code == 400 and "not accepted" in answer.get_json()["message"]
    assert _leftovers(storebase) == [".pfcon-uploads"]


def test_login_form_without_files_still_works(client) -> None:
    body, content_type = _multipart([("pfcon_user", b"pfcon", None), ("pfcon_password", b"pfcon1234", None)])
    answer = client.post("/api/v1/auth-token/", data=body, content_type=content_type)
    assert answer.status_code == 200 and answer.get_json()["token"]


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=b"],
)
def test_login_body_is_a_few_kib(client, content_type) -> None:
    """A 1 GiB JSON login took a worker to 3.1 GB RSS; the limit holds before anything is read."""
    body = json.dumps({**LOGIN, "pad": "x" * 20_000}).encode()
    answer = client.post("/api/v1/auth-token/", data=body, content_type=content_type)
    assert answer.status_code == 413 and "limit" in answer.get_json()["message"]
    assert client.post("/api/v1/auth-token/", json=LOGIN).status_code == 200


@pytest.mark.parametrize("user", ["\\ud800", "pf\\udfffcon"])
def test_lone_surrogate_in_login_is_400(client, user) -> None:
    body = f'{{"pfcon_user": "{user}", "pfcon_password": "pfcon1234"}}'
    answer = client.post("/api/v1/auth-token/", data=body, content_type="application/json")
    assert answer.status_code == 400 and answer.is_json


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
def test_bearer_scheme_is_case_insensitive(client, scheme) -> None:
    token = client.post("/api/v1/auth-token/", json=LOGIN).get_json()["token"]
    answer = client.get("/api/v1/jobs/", headers={"Authorization": f"{scheme} {token}"})
    assert answer.status_code == 200


def test_only_data_file_is_taken_other_file_parts_are_400(client, auth, storebase, jid) -> None:
    for extra in (("evil", "x.zip"), ("data_file2", "y.zip"), ("entrypoint", "e.zip")):
        body, content_type = _multipart(
            [*_form_parts(jid), ("data_file", make_zip({"a": "1"}), "in.zip"), (extra[0], b"zz", extra[1])]
        )
        answer = client.post("/api/v1/jobs/", data=body, content_type=content_type, headers=auth)
        assert answer.status_code == 400 and extra[0] in answer.get_json()["message"], answer.get_json()
        assert _leftovers(storebase) == [".pfcon-uploads"]


def test_data_file_may_come_before_the_fields(client, auth, storebase, jid) -> None:
    body, content_type = _multipart([("data_file", make_zip({"d/a.txt": "1"}), "in.zip"), *_form_parts(jid)])
    answer = client.post("/api/v1/jobs/", data=body, content_type=content_type, headers=auth)
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json()["data"]["nfiles"] == 1


def test_all_fields_together_are_capped(client, auth, storebase, jid) -> None:
    """1 000 fields x 4 MiB once passed (each under the per-field cap)."""
    parts = _form_parts(jid) + [("args", b"a" * (1 << 20), None)] * 6
    body, content_type = _multipart(parts)
    answer = client.post("/api/v1/jobs/", data=body, content_type=content_type, headers=auth)
    assert answer.status_code == 413 and "fields" in answer.get_json()["message"]
    assert _leftovers(storebase) == [".pfcon-uploads"]


def test_urlencoded_submission_is_capped_before_it_is_read(client, auth, storebase) -> None:
    body = b"args=" + b"a" * (5 << 20)
    answer = client.post(
        "/api/v1/jobs/", data=body, content_type="application/x-www-form-urlencoded", headers=auth
    )
    assert answer.status_code == 413
    assert _leftovers(storebase) == [".pfcon-uploads"]


def test_unauthenticated_submission_reads_nothing(client, storebase, jid) -> None:
    form = job_form(jid, data_file=(io.BytesIO(make_zip({"a": "1"})), "in.zip"))
    answer = client.post("/api/v1/jobs/", data=form, content_type="multipart/form-data")
    assert answer.status_code == 401
    assert _leftovers(storebase) == [".pfcon-uploads"]


def test_a_link_whose_copy_name_is_taken_is_400(client, auth, storebase, jid) -> None:
    files = {
        "data/series/a.dcm": "1",
        "data_series": "a file where the copy would go",
        "l.chrislink": "data/series",
    }
    form = job_form(jid, data_file=(io.BytesIO(make_zip(files)), "in.zip"))
    answer = client.post("/api/v1/jobs/", data=form, content_type="multipart/form-data", headers=auth)
    assert answer.status_code == 400, answer.get_json()
    assert _leftovers(storebase) == [".pfcon-uploads"]


def test_corrupt_deflate_is_400(client, auth, storebase, jid) -> None:
    data = bytearray(make_zip({"a.txt": "some text that deflates " * 200}))
    data[40:56] = b"\xff" * 16
    form = job_form(jid, data_file=(io.BytesIO(bytes(data)), "in.zip"))
    answer = client.post("/api/v1/jobs/", data=form, content_type="multipart/form-data", headers=auth)
    assert answer.status_code == 400 and "corrupt" in answer.get_json()["message"]
    assert _leftovers(storebase) == [".pfcon-uploads"]


def test_in_network_storage_drops_a_stray_data_file(make_app, storebase, jid) -> None:
    """Nothing of a data_file is written when the storage takes no upload (pfconclient's CLI sends one)."""
    (storebase / "in").mkdir()
    (storebase / "in/a.txt").write_text("1")
    client = make_app(PFCON_INNETWORK="true", STORAGE_ENV="filesystem").test_client()
    token = client.post("/api/v1/auth-token/", json=LOGIN).get_json()["token"]
    form = job_form(jid, input_dirs="in", output_dir="out", data_file=(io.BytesIO(b"x" * 100_000), "stray"))
    answer = client.post(
        "/api/v1/jobs/",
        data=form,
        content_type="multipart/form-data",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 201, answer.get_json()
    assert list((storebase / ".pfcon-uploads").iterdir()) == []


def _lying_zips() -> dict[str, bytes]:
    """A stored zip whose first entry (3 MiB: past the reader's first 1 MiB read, so its data
    is passed through unsearched) does not hold what its local header says."""
    data = os.urandom(3 << 20)
    archive = make_zip({"a.bin": data, "b.txt": "b"}, zipfile.ZIP_STORED)
    at = archive.index(data)
    inside = bytearray(archive)
    hidden = b'\r\n--b0\r\nContent-Disposition: form-data; name="jid"\r\n\r\nother\r\n--b0--\r\n'
    inside[at + (2 << 20) : at + (2 << 20) + len(hidden)] = hidden
    zips = {"boundary-inside": bytes(inside)}
    for name, change in (("longer", 100), ("longer-than-the-body", 8 << 20), ("shorter", -100)):
        zips[name] = declare_entry_size(archive, "a.bin", len(data) + change)
    return zips


@pytest.mark.parametrize("case", ["boundary-inside", "longer", "longer-than-the-body", "shorter"])
def test_a_zip_entry_that_lies_about_its_size_is_400(client, auth, storebase, jid, case) -> None:
    body, content_type = _multipart([*_form_parts(jid), ("data_file", _lying_zips()[case], "in.zip")])
    answer = client.post("/api/v1/jobs/", data=body, content_type=content_type, headers=auth)
    assert answer.status_code == 400 and answer.is_json, (answer.status_code, answer.data[:300])
    assert answer.get_json()["message"]
    assert _leftovers(storebase) == [".pfcon-uploads"]
