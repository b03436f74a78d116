"""Fixtures for the real S3 server: Swift's s3api on the loopback Swift (scripts/setup.d/40-swift.sh).

Import ``s3_client_fixture`` and ``s3_bucket_fixture`` into a test module to use the fixtures
``s3_client`` and ``s3_bucket``. :class:`Relay` is a real TCP relay in front of the server that
a test can take down and bring back, to cut the network between pfcon and S3 without touching
the shared Swift.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.helpers import RUN_ID
from tests.swift_fixtures import answers, start_swift_unless

ENDPOINT = "http://127.0.0.1:8080"
ACCESS_KEY, SECRET_KEY = "chris:chris1234", "testing"


def connect(endpoint: str = ENDPOINT) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


@pytest.fixture(scope="session", name="s3_client")
def s3_client_fixture() -> Any:
    """A boto3 client of the loopback S3 API, started by the setup script when it is down."""
    start_swift_unless(lambda: answers(lambda: connect().list_buckets()), "S3")
    return connect()


@pytest.fixture(scope="session", name="s3_bucket")
def s3_bucket_fixture(s3_client: Any) -> Iterator[str]:
    """A bucket of this test session's own, emptied (unfinished uploads too) and removed at the end."""
    name = f"pfcon-test-{RUN_ID}-{uuid.uuid4().hex[:6]}"
    s3_client.create_bucket(Bucket=name)
    yield name
    empty_bucket(s3_client, name)
    with contextlib.suppress(Exception):
        s3_client.delete_bucket(Bucket=name)


def empty_bucket(client: Any, bucket: str, prefix: str = "") -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", ()):
            client.delete_object(Bucket=bucket, Key=item["Key"])
    for upload in unfinished_uploads(client, bucket, prefix):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])


def unfinished_uploads(client: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    return client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])


def s3_env(bucket: str, **extra: str) -> dict[str, str]:
    return {
        "PFCON_INNETWORK": "true",
        "STORAGE_ENV": "s3",
        "S3_ENDPOINT_URL": ENDPOINT,
        "S3_ACCESS_KEY": ACCESS_KEY,
        "S3_SECRET_KEY": SECRET_KEY,
        "S3_BUCKET_NAME": bucket,
        **extra,
    }


class Relay:
    """A TCP relay from a loopback port to the S3 server that can go down and come back.

    ``down()`` closes the listening socket and every open connection (clients see refused
    connections, as with a stopped server); ``up()`` listens on the same port again.
    ``cut_after(n)`` lets ``n`` more bytes through towards the server, then goes down — an
    outage in the middle of a transfer. ``throttle(n)`` answers the next ``n`` connections
    itself with S3's ``503 SlowDown``, as an overloaded server or its load balancer does.
    """

    def __init__(self, target_port: int = 8080) -> None:
        self.target = ("127.0.0.1", target_port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._budget: int | None = None
        self.throttled = 0
        self._throttle = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener, self._budget = listener, None
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        for sock in [listener, *sockets]:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def cut_after(self, nbytes: int) -> None:
        with self._lock:
            self._budget = nbytes

    def throttle(self, connections: int) -> None:
        with self._lock:
            self._throttle, self.throttled = connections, 0

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self._take_throttle():
                threading.Thread(target=_slow_down, args=(client,), daemon=True).start()
                continue
            try:
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._sockets |= {client, server}
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, to_server: bool) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            if to_server and self._spend(len(data)):
                self.down()
                return
            try:
                sink.sendall(data)
            except OSError:
                return

    def _take_throttle(self) -> bool:
        with self._lock:
            if self._throttle <= 0:
                return False
            self._throttle -= 1
            self.throttled += 1
            return True

    def _spend(self, nbytes: int) -> bool:
        """Whether the budget ran out (the relay must go down before passing these bytes)."""
        with self._lock:
            if self._budget is None:
                return False
            self._budget -= nbytes
            return self._budget < 0


SLOW_DOWN = (
    b"<?xml version='1.0' encoding='UTF-8'?>\n<Error><Code>SlowDown</Code>"
    b"<Message>Please reduce your request rate.</Message></Error>"
)


def _slow_down(client: socket.socket) -> None:
    """Read one request's head, answer 503 SlowDown, close (the client retries elsewhere)."""
    with client:
        client.settimeout(10)
        head = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in head and (chunk := client.recv(65536)):
                head += chunk
            client.sendall(
                b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
                + f"Content-Length: {len(SLOW_DOWN)}\r\n\r\n".encode()
                + SLOW_DOWN
            )


@pytest.fixture(name="relay")
def relay_fixture() -> Iterator[Relay]:
    relay = Relay()
    relay.up()
    yield relay
    relay.down()


class S3Objects:
    """A client's data in the bucket, as the in-network tests put and read it."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client, self.bucket = client, bucket

    def put(self, name: str, body: bytes) -> None:
        """Exactly the key ``name`` (boto3 sends ``..`` in keys as it is)."""
        self.client.put_object(Bucket=self.bucket, Key=name, Body=body)

    def listing(self, prefix: str) -> dict[str, Any]:
        """Key -> last modified, of every object under ``prefix/``."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix + "/")
        return {item["Key"]: item["LastModified"] for page in pages for item in page.get("Contents", ())}

    def read(self, prefix: str) -> dict[str, bytes]:
        """Name below ``prefix/`` -> content, of every object there."""
        return {
            key[len(prefix) + 1 :]: self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            for key in self.listing(prefix)
        }
