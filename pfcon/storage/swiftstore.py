"""One OpenStack Swift container (an :class:`ObjectStore`), through a small pool of
python-swiftclient connections.

A swiftclient ``Connection`` is not thread-safe, so each thread of a bounded transfer borrows
one from the pool and gives it back; each connection logs in once and keeps its token. Every
library error leaves this module as a domain error: an object that is not there is ``None``
or an empty listing, anything else from Swift (refused connection, timeout, 5xx, failed
login) is :class:`StorageUnavailable` with a message — a 503, never a 500. Bodies are
streamed in chunks both ways.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from requests.exceptions import RequestException
from swiftclient.client import ClientException, Connection

from pfcon.errors import StorageUnavailable
from pfcon.settings import SwiftSettings
from pfcon.storage.copying import COPY_WORKERS, bounded_each
from pfcon.storage.filemaker import write_all
from pfcon.storage.objectstore import Download, ObjectMissing, ObjectStore, StoredObject, Upload, fetching

CHUNK = 1024 * 1024
PAGE = 10_000


class SwiftContainer(ObjectStore):
    """The container named by SWIFT_CONTAINER_NAME; the connection pool is built lazily."""

    def __init__(self, settings: SwiftSettings, pool_size: int = 8, timeout: float = 30) -> None:
        self.settings = settings
        self.container = settings.container_name or ""
        self.label = f"Swift container {self.container!r} at {settings.auth_url}"
        self.timeout = timeout
        self._pool: queue.LifoQueue[Connection] = queue.LifoQueue()
        self._slots = pool_size

    # -- connections ----------------------------------------------------------------------
    def _new_connection(self) -> Connection:
        return Connection(
            authurl=self.settings.auth_url,
            user=self.settings.username,
            key=self.settings.key,
            retries=2,
            starting_backoff=0.25,
            max_backoff=1,
            timeout=self.timeout,
        )

    @contextlib.contextmanager
    def connection(self, what: str) -> Iterator[Connection]:
        """Borrow a connection; Swift errors become :class:`StorageUnavailable` naming ``what``."""
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            conn = self._new_connection()
        healthy = True
        try:
            yield conn
        except ClientException as error:
            if error.http_status == 404:
                raise ObjectMissing(what) from None
            healthy = False
            raise StorageUnavailable(
                f"Swift at {self.settings.auth_url} failed to {what}: {_short(error)}"
            ) from None
        except RequestException as error:
            healthy = False
            raise StorageUnavailable(
                f"Swift at {self.settings.auth_url} does not answer ({what}): {type(error).__name__}"
            ) from None
        except BaseException:  # e.g. a full disk mid-body: the connection's state is unknown
            healthy = False
            raise
        finally:
            if healthy and self._pool.qsize() < self._slots:
                self._pool.put(conn)
            else:
                conn.close()

    # -- reading --------------------------------------------------------------------------
    def ping(self) -> None:
        with self.connection("answer a HEAD of the account") as conn:
            conn.head_account()

    def objects(self, prefix: str) -> Iterator[StoredObject]:
        marker = ""
        while True:
            try:
                with self.connection(f"list {prefix!r}") as conn:
                    _headers, page = conn.get_container(
                        self.container, prefix=prefix, marker=marker, limit=PAGE
                    )
            except ObjectMissing:  # no container yet: nothing in it
                return
            yield from (StoredObject(o["name"], o["bytes"], o.get("hash", "")) for o in page)
            if len(page) < PAGE:
                return
            marker = page[-1]["name"]

    def head(self, key: str) -> StoredObject | None:
        try:
            with self.connection(f"look up {key!r}") as conn:
                headers = conn.head_object(self.container, key)
        except ObjectMissing:
            return None
        return StoredObject(key, int(headers.get("content-length", 0)), headers.get("etag", "").strip('"'))

    def read_small(self, key: str, limit: int) -> bytes:
        data = b""
        with fetching(key), self.connection(f"download {key!r}") as conn:
            _headers, body = conn.get_object(self.container, key, resp_chunk_size=limit + 1)
            for chunk in body:
                data += chunk
                if len(data) > limit:
                    break
        return data[: limit + 1]

    def download_all(self, downloads: Iterable[Download], exclusive: bool = False) -> None:
        bounded_each(lambda pair: self.download(pair[0].name, pair[1], exclusive), downloads, COPY_WORKERS)

    def download(self, key: str, dest: Path, exclusive: bool = False) -> None:
        """Stream one object to ``dest``; with ``exclusive`` an existing ``dest`` is never overwritten."""
        with fetching(key, clashes=not exclusive), self.connection(f"download {key!r}") as conn:
            _headers, body = conn.get_object(self.container, key, resp_chunk_size=CHUNK)
            with dest.open("xb" if exclusive else "wb", buffering=0) as out:
                for chunk in body:
                    write_all(out.fileno(), chunk)  # in pieces: see filemaker.WRITE_PIECE

    # -- writing --------------------------------------------------------------------------
    def ensure_container(self) -> None:
        with self.connection(f"create container {self.container!r}") as conn:
            conn.put_container(self.container)

    def upload_all(self, uploads: Iterable[Upload]) -> None:
        def send(pair: Upload) -> None:
            local, key = pair
            self.upload(key, open(local.fd, "rb"), local.size)  # noqa: SIM115 - upload closes it

        bounded_each(send, uploads, COPY_WORKERS)

    def upload(self, key: str, data: BinaryIO, size: int) -> None:
        """Stream one open file of ``size`` bytes to ``key``; the file is closed."""
        with data, self.connection(f"upload {key!r}") as conn:
            conn.put_object(self.container, key, contents=data, content_length=size, chunk_size=CHUNK)


def _short(error: ClientException) -> str:
    status = f"HTTP {error.http_status}" if error.http_status else "no answer"
    return f"{status} {error.http_reason or error.msg}".strip()
