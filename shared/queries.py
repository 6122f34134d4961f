"""Reads of runs and their epochs. Each takes a session and changes nothing."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.errors import NotFound
from shared.filters import RunQueryBase, apply_filters, order_by
from shared.models import Epoch, Run, RunStatus


def get_run(session: Session, run_id: int) -> Run:
    """Return the run or raise NotFound."""
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist", {"id": "no such run"})
    return run


def find_by_idempotency_key(session: Session, key: str) -> Run | None:
    """Return the run an earlier submit with this Idempotency-Key created, if any."""
    return session.scalar(select(Run).where(Run.idempotency_key == key))


@dataclass(frozen=True)
class Page:
    """One page of runs and the total that matched."""

    runs: list[Run]
    total: int
    page: int
    limit: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.limit))


def list_runs(session: Session, query: RunQueryBase) -> Page:
    """Return one page of runs matching the query, and how many match in all."""
    total = session.scalar(apply_filters(select(func.count(Run.id)), query)) or 0
    offset = (query.page - 1) * query.limit
    statement = order_by(apply_filters(select(Run), query), query.sort)
    rows = session.scalars(statement.offset(offset).limit(query.limit))
    return Page(list(rows), int(total), query.page, query.limit)


def queued_count(session: Session) -> int:
    """How many runs wait in the queue."""
    return session.scalar(select(func.count(Run.id)).where(Run.status == RunStatus.QUEUED)) or 0


def queued_runs(session: Session, limit: int = 1000) -> list[Run]:
    """Return queued runs in the order workers take them: oldest first."""
    statement = select(Run).where(Run.status == RunStatus.QUEUED).order_by(Run.id).limit(limit)
    return list(session.scalars(statement))


def epochs_of(session: Session, run_id: int) -> list[Epoch]:
    """Return the run's epoch rows in order."""
    return list(session.scalars(select(Epoch).where(Epoch.run_id == run_id).order_by(Epoch.epoch)))


def latest_epochs(session: Session, run_ids: list[int]) -> dict[int, Epoch]:
    """Return each run's last recorded epoch, for a page of runs, in one query."""
    if not run_ids:
        return {}
    last = (
        select(Epoch.run_id, func.max(Epoch.epoch).label("epoch"))
        .where(Epoch.run_id.in_(run_ids))
        .group_by(Epoch.run_id)
        .subquery()
    )
    rows = session.scalars(
        select(Epoch).join(last, (Epoch.run_id == last.c.run_id) & (Epoch.epoch == last.c.epoch))
    )
    return {row.run_id: row for row in rows}


def queue_positions(session: Session, runs: list[Run]) -> dict[int, int]:
    """Return the 1-based queue place (oldest first) of each queued run among `runs`, in one query."""
    queued = [run.id for run in runs if run.status == RunStatus.QUEUED]
    if not queued:
        return {}
    ranked = (
        select(Run.id, func.row_number().over(order_by=Run.id).label("position"))
        .where(Run.status == RunStatus.QUEUED)
        .subquery()
    )
    rows = session.execute(select(ranked.c.id, ranked.c.position).where(ranked.c.id.in_(queued)))
    return {run_id: int(position) for run_id, position in rows}
