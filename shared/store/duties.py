"""Cluster duties: a chore every node offers to do and one node does, once per interval.

Each duty is a row (`cluster_duties`) with the time it was last done, on the database's clock. A
node takes the duty by locking its row, skipping it when another node holds it, and only when the
interval has passed since it was last done; it does the chore in the same unit of work and marks
the row done. So 200 nodes sweep as often as one, with no election and no advisory lock (which
would not survive a transaction-pooling PgBouncer): the row lock lasts one transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from shared.store.clock import db_now
from shared.store.lease import _insert_for
from shared.store.models import ClusterDuty

# A duty never done is due.
NEVER = datetime(2000, 1, 1, tzinfo=UTC)


def offer_duties(session: Session, *names: str) -> None:
    """Make sure each duty has its row (a node does this when it registers)."""
    insert = _insert_for(session)
    for name in names:
        session.execute(
            insert(ClusterDuty).values(name=name, last_run_at=NEVER).on_conflict_do_nothing()
        )


def take_duty(session: Session, name: str, every: float) -> bool:
    """Whether this unit of work does duty `name` now: it was last done more than `every`
    seconds ago and no other node is doing it. When True, the row stays locked until the
    caller's commit, which marks the duty done; a rollback leaves it due for the next node."""
    due = session.scalar(
        select(ClusterDuty.name)
        .where(ClusterDuty.name == name, ClusterDuty.last_run_at < db_now(-every))
        .with_for_update(skip_locked=True)
    )
    if due is None:
        return False
    # Conditional again: on SQLite there is no row lock, the write lock orders the nodes.
    taken = cast(
        "CursorResult[Any]",
        session.execute(
            update(ClusterDuty)
            .where(ClusterDuty.name == name, ClusterDuty.last_run_at < db_now(-every))
            .values(last_run_at=db_now())
        ),
    )
    return taken.rowcount == 1
