"""Writes to runs and their epochs. Each takes a session and never commits."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.errors import Conflict
from shared.models import FINISHED_STATUSES, Epoch, Evaluation, Run, RunStatus, utcnow
from shared.params import Hyperparams
from shared.queries import get_run

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


def _insert_for(session: Session) -> Callable[..., Any]:
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


def fail_abandoned_runs(session: Session, stale_after: float) -> list[int]:
    """Fail running runs whose heartbeat stopped `stale_after` seconds ago; return their ids."""
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
