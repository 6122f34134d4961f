"""The sweeps: taking a run back from a holder that stopped answering, and finding the queued runs
whose message the broker lost.

Every change is an UPDATE conditional on what the sweep read (the run still held by that attempt,
still sent that many times), so a live holder that renewed, or a sweep on another node, wins over
a stale read: a run is never taken back or sent twice.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from shared.domain.metrics import LEASE_EXPIRED, LEASE_TAKEOVERS, POOL_PROCESS_DIED
from shared.domain.status import RunStatus
from shared.store.clock import db_now, now_of
from shared.store.engine import rows_changed
from shared.store.lease import count_finished, drop_checkpoint, requeue_values
from shared.store.metrics import count
from shared.store.models import Run

logger = logging.getLogger(__name__)


def lock_briefly(session: Session) -> None:
    """On PostgreSQL, wait at most a few seconds for a row another process holds locked (a frozen
    holder mid-write); the next sweep tries again."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL lock_timeout = '5s'"))


def take_back(
    session: Session, run: Run, reason: str, max_attempts: int, if_expired: bool = True
) -> bool:
    """Take a running run from a holder that stopped answering: requeue it while attempts
    remain, else fail it naming each lost attempt; a cancelled one ends cancelled.

    Conditional on the run still being held by that attempt (and, with `if_expired`, on its lease
    having run out), so it changes nothing a live holder renewed or another sweep already changed.
    Returns True when the run was requeued (the caller sends its message after the commit).
    """
    # The record's time is for people; the condition below reads the clock again, in the UPDATE.
    at = now_of(session).isoformat()
    lost = [
        *run.lost_attempts,
        {"attempt": run.attempt, "worker": run.worker, "reason": reason, "at": at},
    ]
    held = (Run.id == run.id) & (Run.attempt == run.attempt) & (Run.status == RunStatus.RUNNING)
    if if_expired:
        held = held & (Run.lease_expires_at < db_now())
    if run.cancel_requested:
        values: dict[str, Any] = {"status": RunStatus.CANCELLED, "finished_at": db_now()}
    elif len(lost) >= max_attempts:
        values = {"status": RunStatus.FAILED, "finished_at": db_now(), "error": _gave_up(lost)}
    else:
        values = requeue_values()
    changed = session.execute(
        update(Run)
        .where(held)
        .values(**{"lease_expires_at": None, **values, "lost_attempts": lost})
    )
    if rows_changed(changed) != 1:
        return False
    count(session, LEASE_TAKEOVERS, LEASE_EXPIRED if if_expired else POOL_PROCESS_DIED)
    if values["status"] != RunStatus.QUEUED:
        finished_at = session.scalar(select(Run.finished_at).where(Run.id == run.id))
        count_finished(session, values["status"], run.started_at, finished_at)
        drop_checkpoint(session, run.id)
    logger.warning(
        "run %s attempt %s on %s lost (%s): %s",
        run.id,
        run.attempt,
        run.worker,
        reason,
        values["status"].value if isinstance(values["status"], RunStatus) else values["status"],
    )
    return bool(values["status"] == RunStatus.QUEUED)


def _gave_up(lost: list[dict[str, Any]]) -> str:
    attempts = "; ".join(f"attempt {x['attempt']} on {x['worker']}: {x['reason']}" for x in lost)
    return f"gave up after {len(lost)} lost attempts ({attempts})"


def expired(session: Session, limit: int = 100) -> list[Run]:
    """Running runs whose lease ran out by the database's clock, oldest first."""
    statement = (
        select(Run)
        .where(Run.status == RunStatus.RUNNING, Run.lease_expires_at < db_now())
        .order_by(Run.lease_expires_at)
        .limit(limit)
    )
    return list(session.scalars(statement))


def held_by(session: Session, worker: str) -> list[Run]:
    """The running runs a worker node holds."""
    statement = select(Run).where(Run.status == RunStatus.RUNNING, Run.worker == worker)
    return list(session.scalars(statement))


def request_handover(session: Session, worker: str) -> int:
    """Ask every run a worker node holds to stop at its next batch and go back to the queue."""
    result = session.execute(
        update(Run)
        .where(Run.status == RunStatus.RUNNING, Run.worker == worker)
        .values(handover_requested=True)
    )
    return rows_changed(result)


def unsent(session: Session, queue: str, in_broker: int, grace: float) -> list[int]:
    """Queued runs of `queue` whose message the broker no longer has; marks each as sent again.

    Workers take messages oldest first, so when the broker holds `in_broker` messages for
    `queued` queued runs, the `queued - in_broker` runs whose last message is oldest are the ones
    without one (a broker that restarted empty, a lost write). Only those last sent more than
    `grace` seconds ago by the database's clock count (a message may be on its way to a worker),
    and each is marked with a conditional update, so concurrent sweeps send one copy, not one
    each. The caller sends them.
    """
    due = func.coalesce(Run.sent_at, Run.created_at) < db_now(-grace)
    queued = session.execute(
        select(Run.id, Run.sends, due.label("due"))
        .where(Run.status == RunStatus.QUEUED, Run.queue == queue)
        .order_by(Run.sent_at.is_not(None), Run.sent_at, Run.id)
    ).all()
    missing = len(queued) - in_broker
    marked = []
    for run_id, sends, is_due in queued[: max(0, missing)]:
        if not is_due:
            continue
        resent = session.execute(
            update(Run)
            .where(Run.id == run_id, Run.status == RunStatus.QUEUED, Run.sends == sends)
            .values(sends=sends + 1, sent_at=db_now())
        )
        if rows_changed(resent) == 1:
            marked.append(run_id)
    return marked
