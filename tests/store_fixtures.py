"""Job-store fixtures: a fresh database per test, on SQLite and on a real PostgreSQL.

PostgreSQL is the one scripts/setup.d/45-postgresql.sh starts on loopback (role pfcon, allowed
to create databases); each test gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get(
    "PFCON_TEST_DATABASE_URL", "postgresql+psycopg://pfcon:pfcon@127.0.0.1:5432/pfcon_test"
)


def _pg_answers() -> bool:
    try:
        with psycopg.connect(_libpq(PG_URL), connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgresql_server() -> str:
    """The admin URL of a PostgreSQL that answers; started by the setup script if needed."""
    if not _pg_answers():
        result = subprocess.run(
            ["bash", str(ROOT / "scripts/system-setup.sh"), "postgresql"], capture_output=True, text=True
        )
        if result.returncode != 0 or not _pg_answers():
            pytest.skip(f"no PostgreSQL: {result.stderr.strip()[-500:]}")
    return PG_URL


@pytest.fixture
def postgresql_url(postgresql_server: str) -> Iterator[str]:
    """A new, empty database for one test."""
    name = f"pfcon_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(postgresql_server), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield make_url(postgresql_server).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(_libpq(postgresql_server), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database the store supports in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'pfcon.db'}"
    request.applymarker(pytest.mark.integration)
    return request.getfixturevalue("postgresql_url")
