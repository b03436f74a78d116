"""Alembic environment: pfcon passes the connection (see pfcon.store.migrate); none is made here."""

from alembic import context

from pfcon.store.tables import LIVE_ROWS, jobs, metadata

# The partial unique index's PostgreSQL form, kept out of pfcon.store.tables so that a
# SQLite service's workers do not load the PostgreSQL dialect (see there).
_live = next(index for index in jobs.indexes if index.name == "uq_jobs_live_jid_kind")
_live.dialect_options["postgresql"]["where"] = LIVE_ROWS

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `pfcon db upgrade`, which connects and takes the lock")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
