"""Data functions on runs and their epochs. Each takes a session and never commits."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.errors import Conflict, NotFound
from shared.models import FINISHED_STATUSES, Epoch, Evaluation, Run, RunStatus, utcnow
from shared.params import Hyperparams

logger = logging.getLogger(__name__)


def default_name(params: Hyperparams) -> str:
    """Name a run after what sets it apart, when the user gave it no name."""
    scale = "norm" if params.normalize else "raw"
    return f"{params.optimizer} lr={params.learning_rate:g} h={params.hidden_units} {scale}"


def create_run(
    session: Session,
    params: Hyperparams,
    name: str | None = None,
    idempotency_key: str | None = None,
) -> Run:
    """Add a queued run with a drawn seed if it has none; flushed so it has an id, not committed."""
    params = params.with_seed()
    run = Run(
        name=(name or "").strip() or default_name(params),
        status=RunStatus.QUEUED,
        idempotency_key=idempotency_key,
        attempt=0,
        epochs_done=0,
        cancel_requested=False,
        created_at=utcnow(),
        **params.model_dump(),
    )
    session.add(run)
    session.flush()
    return run


def get_run(session: Session, run_id: int) -> Run:
    """Return the run or raise NotFound."""
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist", {"id": "no such run"})
    return run


def find_by_idempotency_key(session: Session, key: str) -> Run | None:
    """Return the run an earlier submit with this Idempotency-Key created, if any."""
    return session.scalar(select(Run).where(Run.idempotency_key == key))


def set_task_id(session: Session, run_id: int, task_id: str) -> None:
    """Remember the Celery task id that carries the run."""
    session.execute(update(Run).where(Run.id == run_id).values(task_id=task_id))


def claim_run(session: Session, run_id: int, worker: str, stale_after: float) -> bool:
    """Atomically mark a queued run (or a running one whose worker went silent) as ours.

    Returns False when the run is finished, cancelled, or held by a live worker: the task must not
    train it again.
    """
    now = utcnow()
    stale_before = now - timedelta(seconds=stale_after)
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.cancel_requested.is_(False))
        .where(
            (Run.status == RunStatus.QUEUED)
            | ((Run.status == RunStatus.RUNNING) & (Run.heartbeat_at < stale_before))
        )
        .values(
            status=RunStatus.RUNNING,
            worker=worker,
            started_at=now,
            heartbeat_at=now,
            attempt=Run.attempt + 1,
            error=None,
        )
    )
    return result.rowcount == 1


def is_stale(run: Run, stale_after: float) -> bool:
    """Whether a run's heartbeat is older than `stale_after` seconds (or it never had one)."""
    if run.heartbeat_at is None:
        return True
    return run.heartbeat_at < utcnow() - timedelta(seconds=stale_after)


def heartbeat(session: Session, run_id: int) -> bool:
    """Refresh the run's heartbeat; return whether a cancel was requested."""
    session.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=utcnow()))
    return bool(session.scalar(select(Run.cancel_requested).where(Run.id == run_id)))


def _greatest(session: Session, column: Any, value: int) -> Any:
    """Return SQL for the larger of a column and a value (SQLite spells GREATEST as MAX)."""
    if session.get_bind().dialect.name == "sqlite":
        return func.max(column, value)
    return func.greatest(column, value)


def _insert_for(session: Session):  # type: ignore[no-untyped-def]
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"no upsert for {dialect}")


def record_epoch(
    session: Session,
    run_id: int,
    epoch: int,
    loss: float,
    accuracy: float,
    seconds: float,
    val_loss: float | None = None,
    val_accuracy: float | None = None,
) -> None:
    """Upsert one epoch's metrics (a redelivered task overwrites, never duplicates)."""
    values = {
        "loss": loss,
        "accuracy": accuracy,
        "val_loss": val_loss,
        "val_accuracy": val_accuracy,
        "seconds": seconds,
        "recorded_at": utcnow(),
    }
    insert = _insert_for(session)
    statement = insert(Epoch).values(run_id=run_id, epoch=epoch, **values)
    session.execute(
        statement.on_conflict_do_update(index_elements=["run_id", "epoch"], set_=values)
    )
    session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(epochs_done=_greatest(session, Run.epochs_done, epoch), heartbeat_at=utcnow())
    )


def record_environment(session: Session, run_id: int, environment: dict[str, str]) -> None:
    """Store the versions and dataset checksum that make the run reproducible."""
    session.execute(update(Run).where(Run.id == run_id).values(**environment))


def finish_run(
    session: Session,
    run_id: int,
    status: RunStatus,
    *,
    test_loss: float | None = None,
    test_accuracy: float | None = None,
    error: str | None = None,
    evaluation: dict[str, Any] | None = None,
) -> None:
    """Record how a run ended, with its final figures or its error."""
    if status not in FINISHED_STATUSES:
        raise ValueError(f"{status} is not a final status")
    session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(
            status=status,
            finished_at=utcnow(),
            test_loss=test_loss,
            test_accuracy=test_accuracy,
            error=error,
        )
    )
    if evaluation is not None:
        session.merge(Evaluation(run_id=run_id, **evaluation))


def request_cancel(session: Session, run_id: int) -> Run:
    """Cancel a queued run at once, or ask a running one to stop; 409 for a finished run."""
    run = get_run(session, run_id)
    if run.status in FINISHED_STATUSES:
        raise Conflict(
            f"run {run_id} is already {run.status.value}", {"status": f"run is {run.status.value}"}
        )
    now = utcnow()
    session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.QUEUED)
        .values(status=RunStatus.CANCELLED, finished_at=now, cancel_requested=True)
    )
    session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.RUNNING)
        .values(cancel_requested=True)
    )
    session.refresh(run)
    return run


def fail_stale_runs(session: Session, stale_after: float) -> list[int]:
    """Mark running runs whose heartbeat stopped `stale_after` seconds ago as failed."""
    cutoff = utcnow() - timedelta(seconds=stale_after)
    stale = list(
        session.scalars(
            select(Run.id).where(Run.status == RunStatus.RUNNING, Run.heartbeat_at < cutoff)
        )
    )
    for run_id in stale:
        session.execute(
            update(Run)
            .where(Run.id == run_id, Run.status == RunStatus.RUNNING, Run.heartbeat_at < cutoff)
            .values(
                status=RunStatus.FAILED,
                finished_at=utcnow(),
                error=f"worker lost: no heartbeat for over {stale_after:.0f} s",
            )
        )
        logger.warning("run %s failed: its worker stopped sending heartbeats", run_id)
    return stale


def epochs_of(session: Session, run_id: int) -> list[Epoch]:
    """Return the run's epoch rows in order."""
    return list(session.scalars(select(Epoch).where(Epoch.run_id == run_id).order_by(Epoch.epoch)))


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


def queue_position(session: Session, run: Run) -> int | None:
    """Return a queued run's 1-based place in the queue (oldest first), else None."""
    return queue_positions(session, [run]).get(run.id)


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


@dataclass(frozen=True)
class Progress:
    """What the dashboard shows of a run in flight."""

    epochs_done: int
    epochs_total: int
    latest: Epoch | None
    seconds_left: float | None


def progress(run: Run, latest: Epoch | None, now: datetime | None = None) -> Progress:
    """Estimate the time left from the mean epoch time so far."""
    seconds_left = None
    if run.status == RunStatus.RUNNING and run.started_at and run.epochs_done:
        elapsed = ((now or utcnow()) - run.started_at).total_seconds()
        per_epoch = elapsed / run.epochs_done
        seconds_left = max(0.0, per_epoch * (run.epochs - run.epochs_done))
    return Progress(run.epochs_done, run.epochs, latest, seconds_left)
