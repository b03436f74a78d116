"""Connecting to the store's database, and what its failures mean to a client.

SQLite (the default, a file under storeBase) runs in WAL mode, so readers never wait for
the writer; every write transaction starts with ``BEGIN IMMEDIATE``, so two processes that
both mean to write queue on SQLite's lock (``busy_timeout``) instead of failing when one
upgrades its read lock. PostgreSQL goes through psycopg 3 with a short connect timeout and
pooled connections pinged when idle, so a stopped server is a quick 503 and a restarted one is
used again by the same process without a restart of pfcon.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url

from pfcon.errors import InsufficientStorage, JobExists, StoreUnavailable
from pfcon.settings import SettingsError

log = logging.getLogger(__name__)

SQLITE_BUSY_MS = 15_000
SQLITE_CONNECTIONS = 4
LOW_SPACE_BYTES = 256 * 1024  # below this, a failed SQLite write is taken as a full disk
PG_CONNECT_TIMEOUT_S = 5
PING_IDLE_SECONDS = 1.0
WRITE = "pfcon_write"  # execution option: this transaction writes


def is_sqlite(url: URL | str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def describe(url: URL | str) -> str:
    """The database as an operator names it, without its password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite database {parsed.database}"
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"
    return f"{parsed.get_backend_name()} database at {where}"


def create(url: str) -> Engine:
    """An engine for ``url``: SQLite with WAL and immediate write locks, or PostgreSQL."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _make_folder(Path(parsed.database).parent)
        # a few connections are plenty (SQLite has one writer at a time) and keep the
        # process's file descriptors bounded (each holds the database, its WAL and its index)
        engine = sa.create_engine(
            parsed,
            connect_args={"timeout": SQLITE_BUSY_MS / 1000},
            pool_size=SQLITE_CONNECTIONS,
            max_overflow=0,
            pool_timeout=SQLITE_BUSY_MS / 1000,
        )
        _sqlite_setup(engine)
        return engine
    engine = sa.create_engine(
        parsed,
        pool_size=5,
        max_overflow=10,
        pool_timeout=10,
        connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
    )
    _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: Engine) -> None:
    """SQLAlchemy's ``pool_pre_ping``, but only for a connection idle longer than
    :data:`PING_IDLE_SECONDS`.

    A ping is a round trip, and on a busy service (a ChRIS backend polls every live job every
    few seconds) it was a second query for every status poll of a finished job: 0.45 ms instead
    of 0.31 ms. A connection used a moment ago is alive unless the server restarted within that
    moment; then the query fails (a 503), SQLAlchemy sees the disconnect and replaces the whole
    pool, and the next request is served again. A failed ping makes the pool connect anew.
    """

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection, record) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection, record, _proxy) -> None:
        returned_at = record.info.get("returned_at")
        if returned_at is None or time.monotonic() - returned_at <= PING_IDLE_SECONDS:
            return  # new, or used a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise sa.exc.DisconnectionError(f"the pooled connection is dead: {error}") from error


def _make_folder(folder: Path) -> None:
    """The database's own folder (``.pfcon`` in storeBase); never storeBase itself, which a
    typo must not conjure up."""
    try:
        folder.mkdir(exist_ok=True)
    except OSError as error:
        raise SettingsError(
            "PFCON_DATABASE_URL", f"cannot create the SQLite database's folder {folder}: {error.strerror}"
        ) from None


def _sqlite_setup(engine: Engine) -> None:
    """pysqlite's own transaction handling off; writes say BEGIN IMMEDIATE themselves."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # reads run in autocommit (each statement sees one snapshot): no BEGIN to pay for
        if connection.get_execution_options().get(WRITE, False):
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def sqlite_folder(url: URL | str) -> Path | None:
    """Where an SQLite database lives (to tell a full disk from other failures)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).parent


@contextlib.contextmanager
def translated(what: str, folder: Path | None = None) -> Iterator[None]:
    """Database failures as domain errors: 503 when it does not answer, 507 when it is full.

    SQLite on a full disk says ``database or disk is full`` or, writing its WAL or shared
    memory file, ``disk I/O error``: ``folder``'s free space tells which.
    """
    try:
        yield
    except sa.exc.IntegrityError as error:
        raise JobExists(
            "a live job with this jid already exists; delete it first or use another jid"
        ) from error
    except sa.exc.DBAPIError as error:
        text = str(error.orig) if error.orig is not None else str(error)
        if _disk_full(error, text) or _no_space(folder):
            log.error("the job database is full: %s", text)
            raise InsufficientStorage(f"no space left for {what}; nothing was recorded") from None
        log.warning("the job database failed: %s", text)
        raise StoreUnavailable(f"{what} does not answer: {_first_line(text)}") from None
    except sa.exc.SQLAlchemyError as error:  # e.g. no pooled connection came free in time
        log.warning("the job database failed: %s", error)
        raise StoreUnavailable(f"{what} does not answer: {_first_line(str(error))}") from None


def _disk_full(error: sa.exc.DBAPIError, text: str) -> bool:
    orig = error.orig
    if isinstance(orig, OSError) and orig.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "database or disk is full" in text or "No space left on device" in text


def _no_space(folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < LOW_SPACE_BYTES


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"
