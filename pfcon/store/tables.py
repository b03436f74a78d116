"""The job store's tables (SQLAlchemy Core): one row per job, one row per state change.

A *job* row is one unit of work whichever API created it: a plugin container (``kind``
``plugin``) or one of pfcon 6's operations run inside pfcon (``copy``, ``upload``,
``delete``). Rows outlive DELETE (``state`` ``deleted``) as history until pruned, so a jid
may have many rows but at most one live row per kind (a partial unique index).

The schema is changed only by Alembic migrations (``pfcon/store/migrations``); these
definitions are what the migrations build and what the queries are written against.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: an autoincrementing 64-bit key on PostgreSQL, SQLite's rowid alias on SQLite
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)

#: the rows the partial unique index on (jid, kind) covers
LIVE_ROWS = sa.text("state != 'deleted'")

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("jid", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # plugin | copy | upload | delete
    sa.Column("api", sa.String(16), nullable=False),  # classic | pfcon6
    # lifecycle: accepted -> queued -> started -> finished -> deleted
    sa.Column("state", sa.String(16), nullable=False),
    # what a client reads (JobStatus values); terminal once finished
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("message", sa.Text(), nullable=False, server_default=""),
    sa.Column("image", sa.String(1024), nullable=False, server_default=""),
    sa.Column("cmd", sa.Text(), nullable=False, server_default=""),
    sa.Column("spec", sa.JSON(), nullable=True),  # the JobSpec, to start the job after a restart
    sa.Column("auid", sa.String(256), nullable=False, server_default=""),
    sa.Column("container_user", sa.String(64), nullable=True),
    sa.Column("cpu_millicores", sa.Integer(), nullable=True),
    sa.Column("memory_mib", sa.Integer(), nullable=True),
    sa.Column("gpus", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("number_of_workers", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("input_path", sa.String(4096), nullable=True),
    sa.Column("output_path", sa.String(4096), nullable=True),
    sa.Column("engine_id", sa.String(256), nullable=True),
    sa.Column("exit_code", sa.Integer(), nullable=True),
    sa.Column("timestamp", sa.String(64), nullable=True),  # the engine's own, as it gave it
    sa.Column("logs", sa.Text(), nullable=True),  # the final tail of a finished job, capped
    # who is staging (accepted) or starting (queued, claimed) the job: "host:pid"
    sa.Column("owner", sa.String(300), nullable=True),
    sa.Column("claimed_at", When, nullable=True),
    sa.Column("retry_at", When, nullable=True),  # a start waits for the engine until then
    sa.Column("waiting_since", When, nullable=True),  # first start that met a silent engine
    sa.Column("accepted_at", When, nullable=False),
    sa.Column("queued_at", When, nullable=True),
    sa.Column("started_at", When, nullable=True),
    sa.Column("finished_at", When, nullable=True),
    sa.Column("deleted_at", When, nullable=True),
    sa.Column("updated_at", When, nullable=False),
    sa.Index(
        "uq_jobs_live_jid_kind",
        "jid",
        "kind",
        unique=True,
        sqlite_where=LIVE_ROWS,
        # postgresql_where=LIVE_ROWS is added by the migrations' env.py: naming it here would
        # load SQLAlchemy's PostgreSQL dialect into every worker of a SQLite service (2 MiB)
    ),
    sa.Index("ix_jobs_state_id", "state", "id"),
    sa.Index("ix_jobs_status_id", "status", "id"),
    sa.Index("ix_jobs_auid_id", "auid", "id"),
    sa.Index("ix_jobs_image_id", "image", "id"),
    sa.Index("ix_jobs_accepted_at", "accepted_at"),
    sa.Index("ix_jobs_deleted_at", "deleted_at"),
)

job_events = sa.Table(
    "job_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("job_id", BigId, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("message", sa.Text(), nullable=False, server_default=""),
    sa.Column("at", When, nullable=False),
    sa.Index("ix_job_events_job_id_id", "job_id", "id"),
)
