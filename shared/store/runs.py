"""The writes the web side makes to runs: create, mark sent, cancel. Each takes a session and
never commits. A worker's writes are in `shared.store.lease`."""

from __future__ import annotations

import logging

from sqlalchemy import update
from sqlalchemy.orm import Session

from shared.domain.errors import Conflict
from shared.domain.metrics import RUNS_FINISHED, RUNS_SUBMITTED
from shared.domain.params import Hyperparams
from shared.domain.status import FINISHED_STATUSES, RunStatus
from shared.store.clock import db_now, now_of
from shared.store.engine import rows_changed
from shared.store.metrics import count
from shared.store.models import Run
from shared.store.queries import get_run

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
    queue: str = "training",
) -> Run:
    """Add a queued run with a drawn seed if it has none; flushed so it has an id, not committed."""
    params = params.with_seed()
    run = Run(
        name=(name or "").strip() or default_name(params),
        status=RunStatus.QUEUED,
        queue=queue,
        sends=0,
        lost_attempts=[],
        handover_requested=False,
        idempotency_key=idempotency_key,
        attempt=0,
        epochs_done=0,
        cancel_requested=False,
        created_at=now_of(session),  # read back at once, for the answer
        **params.model_dump(),
    )
    session.add(run)
    session.flush()
    count(session, RUNS_SUBMITTED)
    return run


def mark_sent(session: Session, run_id: int, task_id: str) -> None:
    """Remember that a message carrying the run was sent, and its Celery task id."""
    session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(task_id=task_id, sends=Run.sends + 1, sent_at=db_now())
    )


def fail_unsent(session: Session, run_id: int, error: str) -> None:
    """Fail a queued run whose first message could not be sent (the broker was down)."""
    failed = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.QUEUED)
        .values(status=RunStatus.FAILED, finished_at=db_now(), error=error)
    )
    if rows_changed(failed) == 1:
        count(session, RUNS_FINISHED, RunStatus.FAILED)


def request_cancel(session: Session, run_id: int) -> Run:
    """Cancel a queued run at once, or ask a running one to stop; 409 for a finished run.

    For a running run, the holder's next fenced write sees the flag and records nothing more; the
    UPDATE waits for a write in flight, so "accepted" means no later epoch lands.
    """
    run = get_run(session, run_id)
    if run.status in FINISHED_STATUSES:
        raise Conflict(
            f"run {run_id} is already {run.status.value}", {"status": f"run is {run.status.value}"}
        )
    cancelled = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.QUEUED)
        .values(status=RunStatus.CANCELLED, finished_at=db_now(), cancel_requested=True)
    )
    if rows_changed(cancelled) == 1:
        count(session, RUNS_FINISHED, RunStatus.CANCELLED)
    session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.RUNNING)
        .values(cancel_requested=True)
    )
    session.refresh(run)
    return run
