"""The durable job store: tables, migrations and the one repository object (``JobStore``).

``open_store(settings)`` connects; ``prepare(settings)`` does the start-up work once per
service (schema, import of old records, what a stopped service left half done, pruning).
See :mod:`pfcon.store.repository` for how to use it.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from pfcon.settings import STORE_PREPARED_ENV, Settings
from pfcon.store import database
from pfcon.store.repository import CLAIM_LEASE, HistoryPage, HistoryQuery, JobRow, JobStore, NewJob, utc_now

__all__ = ["HistoryPage", "HistoryQuery", "JobRow", "JobStore", "NewJob", "open_store", "prepare"]

log = logging.getLogger(__name__)

#: set in the gunicorn master once ``prepare`` ran, so its workers do not repeat it
PREPARED_ENV = STORE_PREPARED_ENV


def open_store(settings: Settings) -> JobStore:
    return JobStore(database.create(settings.database_url), settings.database_url)


def prepare(settings: Settings, force: bool = False) -> str | None:
    """Migrate, import ``job.json`` records, settle interrupted work, prune old history.

    Serialised across replicas by the migration lock; a no-op in a worker whose master did it.
    Returns the schema revision.
    """
    if os.environ.get(PREPARED_ENV) == settings.database_url and not force:
        return None
    # Alembic (with Mako and Pygments) is only needed here: a worker whose master prepared
    # the store never loads it (about 8 MiB of each worker's memory).
    from pfcon.store import legacy, migrate

    store = open_store(settings)
    try:
        with migrate.migration_lock(store.engine) as conn:
            revision = migrate.upgrade_locked(conn)
            legacy.import_records(store, settings.storebase_mount)
            store.fail_interrupted()
            store.release_stale(CLAIM_LEASE)
            pruned = store.prune(utc_now() - timedelta(days=settings.history_days))
            if pruned:
                log.info("pruned %d deleted jobs older than %d days", pruned, settings.history_days)
    finally:
        store.close()
    return revision
