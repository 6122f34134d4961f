"""leases, fenced epochs, checkpoints and trained models

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 04:37:15.770179
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "checkpoints",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_checkpoints_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_checkpoints")),
    )
    op.create_table(
        "trained_models",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("keras_file", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_trained_models_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_trained_models")),
    )
    with op.batch_alter_table("epochs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempt", sa.Integer(), server_default="1", nullable=False))
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("worker_pid", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("lost_attempts", sa.JSON(), server_default="[]", nullable=False)
        )
        batch_op.add_column(
            sa.Column("queue", sa.String(length=255), server_default="training", nullable=False)
        )
        batch_op.add_column(sa.Column("sends", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("handover_requested", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.create_index("ix_runs_status_lease_expires_at", ["status", "lease_expires_at"])
        batch_op.create_index("ix_runs_status_worker", ["status", "worker"])
    # Runs the old code left running hold no lease: let it lapse at their last heartbeat, so the
    # first sweep of the new workers takes them up again.
    op.execute("UPDATE runs SET lease_expires_at = heartbeat_at WHERE status = 'running'")


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_status_worker")
        batch_op.drop_index("ix_runs_status_lease_expires_at")
        batch_op.drop_column("handover_requested")
        batch_op.drop_column("sent_at")
        batch_op.drop_column("sends")
        batch_op.drop_column("queue")
        batch_op.drop_column("lost_attempts")
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("worker_pid")
    with op.batch_alter_table("epochs", schema=None) as batch_op:
        batch_op.drop_column("attempt")
    op.drop_table("trained_models")
    op.drop_table("checkpoints")
