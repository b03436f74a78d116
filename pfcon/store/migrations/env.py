"""Alembic environment: pfcon passes the connection (see pfcon.store.migrate); none is made here."""

from alembic import context

from pfcon.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `pfcon db upgrade`, which connects and takes the lock")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
