"""Schema migrations (Alembic, shipped in the package) and the one-time work at start-up.

``prepare`` runs once before gunicorn forks its workers (and in ``pfcon db upgrade``): it
brings the schema to the newest revision, imports the records of an older pfcon, and settles
what a stopped service left half done. Two replicas starting together serialise on a lock:
a PostgreSQL advisory lock, or an exclusive file lock beside the SQLite file.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine, make_url

from pfcon.store import database

log = logging.getLogger(__name__)

#: any constant 64-bit number that names "pfcon's migrations" among advisory locks
ADVISORY_LOCK_KEY = 0x7066636F6E6462  # "pfcondb"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "pfcon.store:migrations")
    return config


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current(engine: Engine) -> str | None:
    with _connected(engine) as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextlib.contextmanager
def migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection holding the lock that serialises start-up work across replicas.

    SQLite's lock file is taken before the connection: a new database's first connections
    switch it to WAL, and starters doing that at once found it locked (``database is locked``).
    """
    if engine.dialect.name != "postgresql":
        with _file_lock(make_url(engine.url).database), _connected(engine) as conn:
            yield conn
        return
    with _connected(engine) as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        conn.commit()
        try:
            yield conn
        finally:
            conn.rollback()
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
            conn.commit()


@contextlib.contextmanager
def _connected(engine: Engine) -> Iterator[Connection]:
    with database.translated(database.describe(engine.url)), engine.connect() as conn:
        yield conn


@contextlib.contextmanager
def _file_lock(database_path: str | None) -> Iterator[None]:
    if not database_path or database_path == ":memory:":
        yield
        return
    lock_path = Path(database_path + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade_locked(conn: Connection) -> str | None:
    """Bring the schema to head on a connection that holds the migration lock."""
    before = MigrationContext.configure(conn).get_current_revision()
    config = alembic_config()
    config.attributes["connection"] = conn
    command.upgrade(config, "head")
    conn.commit()
    after = MigrationContext.configure(conn).get_current_revision()
    if before != after:
        log.info("job store schema upgraded from %s to %s", before or "nothing", after)
    return after


def upgrade(engine: Engine) -> str | None:
    with migration_lock(engine) as conn:
        return upgrade_locked(conn)
