"""runs: no index on lease_expires_at, so that a lease's renewal is a HOT update

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 13:20:00.000000

A running job renews its lease twice a second. While `lease_expires_at` was in an index, each
renewal wrote a new entry into every one of the runs table's indexes (about twenty, two of them
GIN) and the WAL for all of them: 200 nodes' renewals were most of the database's work
(bench.control_plane). Without it PostgreSQL updates the row in place (a heap-only tuple) and
touches no index. The sweep of expired leases reads the running runs through the status index:
they are bounded by the cluster's job slots, not by the history.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_runs_status_lease_expires_at", table_name="runs")


def downgrade() -> None:
    op.create_index("ix_runs_status_lease_expires_at", "runs", ["status", "lease_expires_at"])
