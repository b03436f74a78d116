"""Fixtures for the real Swift server (scripts/setup.d/40-swift.sh): a container per session.

Import ``swift_conn_fixture`` and ``swift_container_fixture`` into a test module to use the
fixtures ``swift_conn`` and ``swift_container``.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Callable, Iterator
from http.client import HTTPConnection
from urllib.parse import quote, urlsplit

import pytest
from swiftclient.client import ClientException, Connection

from tests.conftest import ROOT
from tests.helpers import RUN_ID

AUTH_URL = "http://127.0.0.1:8080/auth/v1.0"
USER, KEY = "chris:chris1234", "testing"


def _connect() -> Connection:
    return Connection(authurl=AUTH_URL, user=USER, key=KEY, retries=0, timeout=10)


def answers(call: Callable[[], object]) -> bool:
    """Whether a call to the server succeeds (any error: it does not answer)."""
    try:
        call()
        return True
    except Exception:
        return False


def start_swift_unless(answering: Callable[[], bool], what: str) -> None:
    """Run the Swift setup script (swift and its S3 API) when ``answering`` fails; skip if it stays down."""
    if answering():
        return
    result = subprocess.run(
        ["bash", str(ROOT / "scripts/system-setup.sh"), "swift"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0 or not answering():
        pytest.skip(f"no {what} server: {result.stderr.strip()[-500:]}")


@pytest.fixture(scope="session", name="swift_conn")
def swift_conn_fixture() -> Iterator[Connection]:
    """A client of the loopback Swift server, started by the setup script when it is down."""
    start_swift_unless(lambda: answers(lambda: _connect().head_account()), "Swift")
    conn = _connect()
    yield conn
    conn.close()


@pytest.fixture(scope="session", name="swift_container")
def swift_container_fixture(swift_conn: Connection) -> Iterator[str]:
    """A container of this test session's own, emptied and removed at the end."""
    name = f"pfcon-test-{RUN_ID}-{uuid.uuid4().hex[:6]}"
    swift_conn.put_container(name)
    yield name
    _headers, objects = swift_conn.get_container(name, full_listing=True)
    for obj in objects:
        raw_request(swift_conn, "DELETE", name, obj["name"])
    with contextlib.suppress(ClientException):
        swift_conn.delete_container(name)


def raw_request(conn: Connection, method: str, container: str, name: str, body: bytes = b"") -> int:
    """A request on exactly the object ``name``: the client libraries collapse ``..`` in URLs."""
    url, token = conn.get_auth()
    parts = urlsplit(url)
    http = HTTPConnection(parts.hostname, parts.port, timeout=10)
    path = f"{parts.path}/{container}/{quote(name)}"
    http.request(method, path, body=body, headers={"X-Auth-Token": token})
    answer = http.getresponse()
    answer.read()
    http.close()
    return answer.status


def put_raw(conn: Connection, container: str, name: str, body: bytes) -> None:
    assert raw_request(conn, "PUT", container, name, body) == 201


def swift_env(container: str, **extra: str) -> dict[str, str]:
    return {
        "PFCON_INNETWORK": "true",
        "STORAGE_ENV": "swift",
        "SWIFT_AUTH_URL": AUTH_URL,
        "SWIFT_USERNAME": USER,
        "SWIFT_KEY": KEY,
        "SWIFT_CONTAINER_NAME": container,
        **extra,
    }


class SwiftObjects:
    """A client's data in the container, as the in-network tests put and read it."""

    def __init__(self, conn: Connection, container: str) -> None:
        self.conn, self.container = conn, container

    def put(self, name: str, body: bytes) -> None:
        """Exactly the object ``name`` (sent raw: the client library would collapse ``..``)."""
        put_raw(self.conn, self.container, name, body)

    def listing(self, prefix: str) -> dict[str, str]:
        """Name -> last modified, of every object under ``prefix/``."""
        _h, objects = self.conn.get_container(self.container, prefix=prefix + "/", full_listing=True)
        return {o["name"]: o["last_modified"] for o in objects}

    def read(self, prefix: str) -> dict[str, bytes]:
        """Name below ``prefix/`` -> content, of every object there."""
        return {
            name[len(prefix) + 1 :]: self.conn.get_object(self.container, name)[1]
            for name in self.listing(prefix)
        }
