"""metric_totals in shards: a total is the sum of up to 16 rows, each transaction adding to one

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 06:40:00.000000

On one row a total's lock queued every epoch write, claim and finish of the cluster behind each
other (bench.control_plane, 200 nodes). The rows already there become shard 0. The table holds a
few dozen rows, so SQLite's batch rebuild of it (its primary key changes) copies next to nothing.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("metric_totals", recreate="auto") as batch:
        batch.add_column(
            sa.Column("shard", sa.SmallInteger(), nullable=False, server_default=sa.text("0"))
        )
        batch.drop_constraint("pk_metric_totals", type_="primary")
        batch.create_primary_key("pk_metric_totals", ["name", "label", "shard"])


def downgrade() -> None:
    # Every total back on one row: shard 0 takes the sum of its shards, the others go.
    op.execute(
        "INSERT INTO metric_totals (name, label, shard, value) "
        "SELECT DISTINCT name, label, 0, 0 FROM metric_totals AS t WHERE NOT EXISTS "
        "(SELECT 1 FROM metric_totals AS z WHERE z.name = t.name AND z.label = t.label "
        "AND z.shard = 0)"
    )
    op.execute(
        "UPDATE metric_totals SET value = (SELECT SUM(s.value) FROM metric_totals AS s "
        "WHERE s.name = metric_totals.name AND s.label = metric_totals.label) WHERE shard = 0"
    )
    op.execute("DELETE FROM metric_totals WHERE shard <> 0")
    with op.batch_alter_table("metric_totals", recreate="auto") as batch:
        batch.drop_constraint("pk_metric_totals", type_="primary")
        batch.create_primary_key("pk_metric_totals", ["name", "label"])
        batch.drop_column("shard")
