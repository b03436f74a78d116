"""jobs and job_events: one row per job or operation, one row per state change

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)
LIVE = sa.text("state != 'deleted'")


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("jid", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("api", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False, server_default=""),
        sa.Column("image", sa.String(1024), nullable=False, server_default=""),
        sa.Column("cmd", sa.Text(), nullable=False, server_default=""),
        sa.Column("spec", sa.JSON(), nullable=True),
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
        sa.Column("timestamp", sa.String(64), nullable=True),
        sa.Column("logs", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(300), nullable=True),
        sa.Column("claimed_at", When, nullable=True),
        sa.Column("retry_at", When, nullable=True),
        sa.Column("waiting_since", When, nullable=True),
        sa.Column("accepted_at", When, nullable=False),
        sa.Column("queued_at", When, nullable=True),
        sa.Column("started_at", When, nullable=True),
        sa.Column("finished_at", When, nullable=True),
        sa.Column("deleted_at", When, nullable=True),
        sa.Column("updated_at", When, nullable=False),
    )
    op.create_index(
        "uq_jobs_live_jid_kind",
        "jobs",
        ["jid", "kind"],
        unique=True,
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )
    for name, columns in (
        ("ix_jobs_state_id", ["state", "id"]),
        ("ix_jobs_status_id", ["status", "id"]),
        ("ix_jobs_auid_id", ["auid", "id"]),
        ("ix_jobs_image_id", ["image", "id"]),
        ("ix_jobs_accepted_at", ["accepted_at"]),
        ("ix_jobs_deleted_at", ["deleted_at"]),
    ):
        op.create_index(name, "jobs", columns)
    op.create_table(
        "job_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "job_id",
            BigId,
            sa.ForeignKey("jobs.id", ondelete="CASCADE", name="fk_job_events_job_id_jobs"),
            nullable=False,
        ),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False, server_default=""),
        sa.Column("at", When, nullable=False),
    )
    op.create_index("ix_job_events_job_id_id", "job_events", ["job_id", "id"])


def downgrade() -> None:
    op.drop_table("job_events")
    op.drop_table("jobs")
