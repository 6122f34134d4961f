"""Cluster duties: a chore every node offers to do and one node does, once per interval.

Each duty is a row (`cluster_duties`) with the time it was last done, on the database's clock. A
node takes its turn when the interval has passed since the duty was last done and no node holds
its row: one statement marks the duty done (`take_turn`); the chore is then done under the row's
lock (`hold_duty`), skipped when another node's turn still holds it. So 200 nodes sweep as often
as one, with no election and no advisory lock (which would not survive a transaction-pooling
PgBouncer): the row lock lasts one transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from shared.store.clock import db_now
from shared.store.engine import rows_changed
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


def take_turn(connection: Connection, name: str, every: float) -> bool:
    """Whether this node does duty `name` now: it was last done more than `every` seconds ago
    and no other node is doing it (its row is not locked). One statement that marks the duty
    done, on an autocommit connection: every other node sees the turn taken at once, and then
    does `hold_duty` with the work. (Marked done only at the end of the work, as it was, the
    duty stayed due while a sweep took back 19 runs for two seconds, and each of the 200 nodes'
    heartbeats in that time opened a transaction to find it locked: the cluster's epoch writes
    slowed to hundreds of milliseconds meanwhile.) A node that fails midway leaves the rest to
    the next interval's turn."""
    due = ClusterDuty.name == name, ClusterDuty.last_run_at < db_now(-every)
    free = select(ClusterDuty.name).where(*due).with_for_update(skip_locked=True)
    # Conditional again: on SQLite there is no row lock, the write lock orders the nodes.
    taken = connection.execute(
        update(ClusterDuty)
        .where(ClusterDuty.name == free.scalar_subquery(), *due)
        .values(last_run_at=db_now())
    )
    return rows_changed(taken) == 1


def hold_duty(session: Session, name: str) -> bool:
    """Lock duty `name`'s row for this unit of work, for the work of a turn `take_turn` gave:
    False when another node's turn still holds it (a sweep that outlasted its interval), so two
    never overlap. On SQLite the database's write lock orders them instead."""
    held = select(ClusterDuty.name).where(ClusterDuty.name == name)
    return session.scalar(held.with_for_update(skip_locked=True)) is not None
