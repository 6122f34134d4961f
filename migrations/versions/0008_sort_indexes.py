"""sort indexes: every sort the lists offer reads an index in order, hyperparameters included

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 06:20:00.000000

Found at a million runs: `sort=-hidden_units` took 640 ms and `sort=learning_rate` with an
optimizer 440 ms, each a top-N sort of the whole table. A (column, id) index per sortable field
makes each a keyset read; the one-column indexes on optimizer and normalize become the leading
columns of theirs, so equality filters on them keep an index.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SORTED = (
    "status",
    "started_at",
    "epochs_done",
    "epochs",
    "batch_size",
    "learning_rate",
    "optimizer",
    "hidden_units",
    "dropout",
    "normalize",
    "validation_split",
    "train_samples",
    "seed",
)
REPLACED = ("optimizer", "normalize")


def upgrade() -> None:
    for column in REPLACED:
        op.drop_index(f"ix_runs_{column}", table_name="runs")
    for column in SORTED:
        op.create_index(f"ix_runs_{column}_id", "runs", [column, "id"])


def downgrade() -> None:
    for column in SORTED:
        op.drop_index(f"ix_runs_{column}_id", table_name="runs")
    for column in REPLACED:
        op.create_index(f"ix_runs_{column}", "runs", [column])
