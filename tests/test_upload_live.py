"""Uploads through live gunicorn, where the body is read straight from the socket.

Under gunicorn a body of known length bypasses gunicorn's and werkzeug's streams
(``pfcon.serving.direct_body``); these check the bytes that arrive, and that gunicorn still
knows where the next request on the same connection starts.
"""

from __future__ import annotations

import http.client
import os
import uuid
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.helpers import declare_entry_size, job_form, make_zip
from tests.live import live_pfcon

pytestmark = pytest.mark.integration

LOGIN = {"pfcon_user": "pfcon", "pfcon_password": "pfcon1234"}


def multipart(form: dict, archive: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b""
    for key, value in form.items():
        for item in value if isinstance(value, list) else [value]:
            body += f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{item}\r\n'.encode()
    body += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="data_file"; filename="in.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    body += archive + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_two_large_uploads_on_one_connection_arrive_whole(tmp_path: Path, docker_client) -> None:
    storebase = tmp_path / "sb"
    storebase.mkdir()
    contents = {
        "big.bin": os.urandom(9 << 20),  # several reads of the parser's 1 MiB buffer
        "sub/small.txt": b"hello\r\n--not-the-boundary\r\n",
        "sub/deep/crlf.bin": b"\r\n" * 50_000,
    }
    with live_pfcon(storebase, tmp_path / "log") as url:
        token = requests.post(url + "auth-token/", json=LOGIN, timeout=10).json()["token"]
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        ports = []
        for number, compression in enumerate((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)):
            jid = f"t-live-upload-{uuid.uuid4().hex[:8]}-{number}"
            body, content_type = multipart(job_form(jid), make_zip(contents, compression))
            headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
            connection.request("POST", "/api/v1/jobs/", body=body, headers=headers)
            reply = connection.getresponse()
            answer = reply.read()
            assert reply.status == 201, answer[:300]
            ports.append(connection.sock.getsockname()[1])  # still open: the same connection
            incoming = next(storebase.glob(f"key-{jid}/incoming"))
            for name, data in contents.items():
                assert (incoming / name).read_bytes() == data, name
            connection.request("DELETE", f"/api/v1/jobs/{jid}/", headers=headers)
            assert connection.getresponse().read() is not None
        assert ports[0] == ports[1], "gunicorn closed the connection after a directly read body"


def test_zip_entries_that_lie_about_their_size_are_400_and_nothing_is_kept(
    tmp_path: Path, docker_client
) -> None:
    """The reader passes an entry's declared bytes through without looking for the boundary:
    a header that lies must still end in a 400 with nothing staged (read from the socket)."""
    storebase = tmp_path / "sb"
    storebase.mkdir()
    data = os.urandom(9 << 20)
    archive = make_zip({"a.bin": data, "b.txt": b"b"}, zipfile.ZIP_STORED)
    at = archive.index(data)
    with live_pfcon(storebase, tmp_path / "log") as url:
        token = requests.post(url + "auth-token/", json=LOGIN, timeout=10).json()["token"]
        for case in ("boundary-inside", "longer-than-the-body"):
            jid = f"t-live-lie-{uuid.uuid4().hex[:8]}"
            if case == "boundary-inside":  # the closing boundary 6 MiB into the entry's data
                body, content_type = multipart(job_form(jid), archive)
                closing = body[body.rindex(b"\r\n--") :]
                start = body.index(archive) + at + (6 << 20)
                body = body[:start] + closing + body[start + len(closing) :]
            else:
                body, content_type = multipart(job_form(jid), declare_entry_size(archive, "a.bin", 25 << 20))
            headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
            reply = requests.post(url + "jobs/", data=body, headers=headers, timeout=60)
            assert reply.status_code == 400, (case, reply.text[:300])
            assert reply.json()["message"], case
            assert not list(storebase.glob("key-*")), case
            assert not list((storebase / ".pfcon-uploads").iterdir()), case
