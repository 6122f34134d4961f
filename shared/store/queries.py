"""Reads of runs, their epochs, evaluations and models. Each takes a session and changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from shared.domain.errors import NotFound
from shared.domain.filters import RunQueryBase
from shared.domain.params import Hyperparams
from shared.domain.status import RunStatus
from shared.store.models import Epoch, Evaluation, Run, TrainedModel


def get_run(session: Session, run_id: int) -> Run:
    """Return the run or raise NotFound."""
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist", {"id": "no such run"})
    return run


def find_by_idempotency_key(session: Session, key: str) -> Run | None:
    """Return the run an earlier submit with this Idempotency-Key created, if any."""
    return session.scalar(select(Run).where(Run.idempotency_key == key))


def apply_filters(statement: Select[Any], query: BaseModel) -> Select[Any]:
    """Add the query's filters to a select over Run."""
    values = query.model_dump(exclude_none=True)
    if "status" in values:
        statement = statement.where(
            Run.status.in_([RunStatus(s) for s in values["status"].split(",")])
        )
    if "q" in values:
        statement = statement.where(
            func.lower(Run.name).contains(values["q"].lower(), autoescape=True)
        )
    if "test_accuracy_min" in values:
        statement = statement.where(Run.test_accuracy >= values["test_accuracy_min"])
    if "test_accuracy_max" in values:
        statement = statement.where(Run.test_accuracy <= values["test_accuracy_max"])
    if "study_id" in values:
        statement = statement.where(Run.study_id == values["study_id"])
    if "created_after" in values:
        statement = statement.where(Run.created_at >= values["created_after"])
    if "created_before" in values:
        statement = statement.where(Run.created_at < values["created_before"])
    for name in Hyperparams.model_fields:
        column = getattr(Run, name)
        if name in values:
            statement = statement.where(column == values[name])
        if f"{name}_min" in values:
            statement = statement.where(column >= values[f"{name}_min"])
        if f"{name}_max" in values:
            statement = statement.where(column <= values[f"{name}_max"])
    return statement


def order_by(statement: Select[Any], sort: str) -> Select[Any]:
    """Sort by the named field, ties broken by id so pages never overlap; NULLs sort last."""
    descending = sort.startswith("-")
    column = getattr(Run, sort.lstrip("-"))
    primary = column.desc() if descending else column.asc()
    tiebreak = Run.id.desc() if descending else Run.id.asc()
    if sort.lstrip("-") == "id":
        return statement.order_by(primary)  # read straight off the primary key's index
    if column.nullable:
        return statement.order_by(column.is_(None), primary, tiebreak)
    return statement.order_by(primary, tiebreak)


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


def runs_by_id(session: Session, run_ids: list[int]) -> dict[int, Run]:
    """The runs with these ids that exist, by id, in one query."""
    return {run.id: run for run in session.scalars(select(Run).where(Run.id.in_(run_ids)))}


def epochs_by_run(session: Session, run_ids: list[int]) -> dict[int, list[Epoch]]:
    """Each run's epoch rows in order (an empty list for a run without any), in one query."""
    series: dict[int, list[Epoch]] = {run_id: [] for run_id in run_ids}
    if run_ids:
        statement = (
            select(Epoch).where(Epoch.run_id.in_(run_ids)).order_by(Epoch.run_id, Epoch.epoch)
        )
        for row in session.scalars(statement):
            series[row.run_id].append(row)
    return series


def per_class_accuracies(session: Session, run_ids: list[int]) -> dict[int, list[float | None]]:
    """The per-class test accuracy of each evaluated run, in one query."""
    # Only the per-class figures: a whole evaluation row also carries the sample digits.
    statement = select(Evaluation.run_id, Evaluation.per_class_accuracy).where(
        Evaluation.run_id.in_(run_ids)
    )
    return {run_id: list(figures) for run_id, figures in session.execute(statement)}


def has_trained_model(session: Session, run_id: int) -> bool:
    """Whether a succeeded run's model is kept, without loading the file."""
    statement = select(TrainedModel.run_id).where(TrainedModel.run_id == run_id)
    return session.scalar(statement) is not None


def trained_model(session: Session, run_id: int) -> TrainedModel | None:
    """The run's trained model (its `.keras` file), if one is kept."""
    return session.get(TrainedModel, run_id)
