"""studies: configurations x seed replicates, and the runs that belong to them

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 06:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("base_params", sa.JSON(), nullable=False),
        sa.Column("design", sa.JSON(), nullable=False),
        sa.Column("varied", sa.JSON(), nullable=False),
        sa.Column("configs", sa.JSON(), nullable=False),
        sa.Column("first_seed", sa.Integer(), nullable=False),
        sa.Column("replicates", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studies")),
    )
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_studies_created_at"), ["created_at"])
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("study_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("config", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_runs_study_id"), ["study_id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_runs_study_id_studies"),
            "studies",
            ["study_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_runs_study_id_studies"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_runs_study_id"))
        batch_op.drop_column("config")
        batch_op.drop_column("study_id")
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_studies_created_at"))
    op.drop_table("studies")
