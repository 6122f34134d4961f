"""execute_run's decisions on a real database, training in this process where it trains at all."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.db import Store
from shared.models import Run, RunStatus, utcnow
from shared.queries import get_run
from shared.runs import request_cancel
from tests.builders import make_run
from worker import jobs
from worker.jobs import Outcome
from worker.process import WorkerContext, load_training


@pytest.fixture()
def context(settings: Settings, store: Store) -> WorkerContext:
    """This test process as a worker: the test's store, TensorFlow and MNIST loaded once."""
    return WorkerContext(settings, store, load_training(settings))


def _age_heartbeat(
    session: Session, run_id: int, seconds: float, attempt: int | None = None
) -> None:
    values: dict[str, object] = {"heartbeat_at": utcnow() - timedelta(seconds=seconds)}
    if attempt is not None:
        values["attempt"] = attempt
    session.execute(update(Run).where(Run.id == run_id).values(**values))
    session.commit()


def test_a_queued_run_is_trained_and_recorded(
    context: WorkerContext, settings: Settings, session: Session
) -> None:
    run = make_run(session, train_samples=500, epochs=2)
    assert jobs.execute_run(context, run.id, "inline@test") == Outcome.SUCCEEDED
    session.expire_all()
    run = get_run(session, run.id)
    assert run.status == RunStatus.SUCCEEDED and run.worker == "inline@test"
    assert [e.epoch for e in run.epoch_rows] == [1, 2] and run.evaluation is not None


def test_finished_and_missing_runs_are_skipped(
    context: WorkerContext, settings: Settings, session: Session
) -> None:
    done = make_run(session, status=RunStatus.SUCCEEDED, test_accuracy=0.9, test_loss=0.3)
    assert jobs.execute_run(context, done.id, "inline@test") == Outcome.SKIPPED
    assert jobs.execute_run(context, 424242, "inline@test") == Outcome.SKIPPED


def test_a_run_held_by_a_live_worker_is_left_alone(
    context: WorkerContext, settings: Settings, session: Session
) -> None:
    run = make_run(session, status=RunStatus.RUNNING, worker="other@host", epochs_done=1)
    _age_heartbeat(
        session, run.id, 1, attempt=3
    )  # even on its last attempt, a live run is its worker's
    assert jobs.execute_run(context, run.id, "inline@test") == Outcome.HELD
    session.expire_all()
    after = get_run(session, run.id)
    assert (after.status, after.worker, after.attempt) == (RunStatus.RUNNING, "other@host", 3)


def test_a_run_whose_worker_went_silent_is_taken_over(
    context: WorkerContext, settings: Settings, session: Session
) -> None:
    run = make_run(
        session,
        status=RunStatus.RUNNING,
        worker="dead@host",
        epochs_done=1,
        train_samples=500,
        epochs=2,
    )
    _age_heartbeat(session, run.id, settings.heartbeat_timeout + 5)
    assert jobs.execute_run(context, run.id, "inline@test") == Outcome.SUCCEEDED
    session.expire_all()
    after = get_run(session, run.id)
    assert (after.worker, after.attempt) == ("inline@test", 2)
    assert [e.epoch for e in after.epoch_rows] == [1, 2]


def test_a_run_lost_on_every_attempt_is_failed_with_the_reason(
    context: WorkerContext, settings: Settings, session: Session
) -> None:
    run = make_run(session, status=RunStatus.RUNNING, worker="dead@host")
    _age_heartbeat(session, run.id, settings.heartbeat_timeout + 5, attempt=jobs.MAX_ATTEMPTS)
    assert jobs.execute_run(context, run.id, "inline@test") == Outcome.FAILED
    session.expire_all()
    after = get_run(session, run.id)
    assert after.status == RunStatus.FAILED and "gave up after 3 attempts" in (after.error or "")


def test_a_cancel_for_a_lost_run_finishes_it_cancelled(
    context: WorkerContext, settings: Settings, session: Session
) -> None:
    run = make_run(session, status=RunStatus.RUNNING, worker="dead@host", epochs_done=2)
    request_cancel(session, run.id)
    session.commit()
    assert (
        jobs.execute_run(context, run.id, "inline@test") == Outcome.HELD
    )  # its worker may still be stopping it
    _age_heartbeat(session, run.id, settings.heartbeat_timeout + 5)
    assert jobs.execute_run(context, run.id, "inline@test") == Outcome.CANCELLED
    session.expire_all()
    after = get_run(session, run.id)
    assert after.status == RunStatus.CANCELLED and len(after.epoch_rows) == 2
