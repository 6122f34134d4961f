"""history: run tags, notes and archive; indexes that keep the lists fast at a million runs

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 02:30:00.000000

Every change is an ADD COLUMN or a CREATE INDEX, never a batch rebuild of `runs`: on SQLite a
rebuild copies the table and drops the old one, and with foreign keys on that drop would cascade
to every epoch, evaluation and model the runs own.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A tag with any of these filters: one GIN index on PostgreSQL (shared/store/models.py).
TAG_FILTER_COLUMNS = (
    "tags",
    "optimizer",
    "status",
    "normalize",
    "batch_size",
    "hidden_units",
    "learning_rate",
    "dropout",
    "study_id",
)

# (name, columns) of the composite indexes each sort reads in order; they replace one-column ones.
SORT_INDEXES = (
    ("ix_runs_test_accuracy_id", ["test_accuracy", "id"]),
    ("ix_runs_test_loss_id", ["test_loss", "id"]),
    ("ix_runs_created_at_id", ["created_at", "id"]),
    ("ix_runs_finished_at_id", ["finished_at", "id"]),
    ("ix_runs_name_id", ["name", "id"]),
    ("ix_runs_archived_finished_at", ["archived", "finished_at"]),
)
REPLACED = (
    ("ix_runs_test_accuracy", ["test_accuracy"]),
    ("ix_runs_created_at", ["created_at"]),
    ("ix_runs_name", ["name"]),
)


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if _postgresql():
        tags = sa.Column(
            "tags",
            postgresql.ARRAY(sa.String(length=64)),
            nullable=False,
            server_default=sa.text("'{}'"),
        )
    else:
        tags = sa.Column("tags", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
    op.add_column("runs", tags)
    op.add_column("runs", sa.Column("note", sa.Text(), nullable=True))
    op.add_column(
        "runs", sa.Column("archived", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    for name, _ in REPLACED:
        op.drop_index(name, table_name="runs")
    for name, columns in SORT_INDEXES:
        op.create_index(name, "runs", columns)
    if _postgresql():
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        # GIN operator classes for scalar columns, so a tag and the filters it is combined
        # with are answered by one GIN index (an AND inside the index, not of two bitmaps).
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    op.create_index(
        "ix_runs_tags_filters", "runs", list(TAG_FILTER_COLUMNS), postgresql_using="gin"
    )
    op.create_index(
        "ix_runs_name_trgm",
        "runs",
        ["name"],
        postgresql_using="gin",
        postgresql_ops={"name": "gin_trgm_ops"},
    )


def downgrade() -> None:
    op.drop_index("ix_runs_name_trgm", table_name="runs")
    op.drop_index("ix_runs_tags_filters", table_name="runs")
    for name, _ in SORT_INDEXES:
        op.drop_index(name, table_name="runs")
    for name, columns in REPLACED:
        op.create_index(name, "runs", columns)
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+ has it): no rebuild of `runs`.
    for column in ("archived", "note", "tags"):
        op.drop_column("runs", column)
