"""cluster duties: the sweeps a whole cluster does once per interval, under a row lock

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 02:35:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cluster_duties",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_cluster_duties")),
    )


def downgrade() -> None:
    op.drop_table("cluster_duties")
