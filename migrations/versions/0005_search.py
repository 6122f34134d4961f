"""search studies: the search spec, its state, the chosen best; runs may end `pruned`

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 02:40:00.000000

The run status column is a VARCHAR(16) without a CHECK constraint (a non-native enum), so the new
`pruned` status needs no change to it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("search", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("search_state", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("best_run_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("test_claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_studies_search_state"), ["search_state"])


def downgrade() -> None:
    # A pruned run reads as a cancelled one to the older schema's code.
    op.execute("UPDATE runs SET status = 'cancelled' WHERE status = 'pruned'")
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_studies_search_state"))
        batch_op.drop_column("test_claimed_at")
        batch_op.drop_column("best_run_id")
        batch_op.drop_column("search_state")
        batch_op.drop_column("search")
