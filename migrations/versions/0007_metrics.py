"""metric_totals: the cluster's counters and histograms, kept by the writes that change them

The counters of runs submitted and finished start from the runs already stored, so a counter
never says fewer runs than the store holds.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 02:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "metric_totals",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", "label", name=op.f("pk_metric_totals")),
    )
    op.execute(
        "INSERT INTO metric_totals (name, label, value) "
        "SELECT 'runs_submitted_total', '', COUNT(*) FROM runs"
    )
    op.execute(
        "INSERT INTO metric_totals (name, label, value) "
        "SELECT 'runs_finished_total', status, COUNT(*) FROM runs "
        "WHERE status IN ('succeeded', 'failed', 'cancelled') GROUP BY status"
    )


def downgrade() -> None:
    op.drop_table("metric_totals")
