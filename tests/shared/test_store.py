"""The store on a real database (SQLite, or PostgreSQL with TRAINYARD_TEST_DATABASE_URL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.errors import Conflict, NotFound
from shared.models import Epoch, Run, RunStatus, utcnow
from shared.params import Hyperparams
from shared.queries import epochs_of, get_run, queue_positions
from shared.runs import (
    claim_run,
    create_run,
    fail_abandoned_runs,
    finish_run,
    record_epoch,
    request_cancel,
)
from tests.builders import make_run


def test_create_run_draws_and_records_a_seed(session: Session) -> None:
    run = create_run(session, Hyperparams())
    session.commit()
    assert run.status == RunStatus.QUEUED
    assert 0 <= run.seed < 2**31
    assert run.params["epochs"] == 5 and run.params["seed"] == run.seed
    assert run.name  # a readable default name


def test_record_epoch_is_an_upsert(session: Session) -> None:
    run = make_run(session, status=RunStatus.RUNNING)
    record_epoch(session, run.id, 1, loss=0.5, accuracy=0.8, seconds=2.0)
    record_epoch(
        session, run.id, 1, loss=0.4, accuracy=0.9, seconds=2.5, val_loss=0.3, val_accuracy=0.95
    )
    record_epoch(session, run.id, 2, loss=0.3, accuracy=0.92, seconds=2.1)
    session.commit()
    rows = epochs_of(session, run.id)
    assert [(e.epoch, e.loss, e.val_accuracy) for e in rows] == [(1, 0.4, 0.95), (2, 0.3, None)]
    assert get_run(session, run.id).epochs_done == 2
    # a late rewrite of epoch 1 must not move the progress counter backwards
    record_epoch(session, run.id, 1, loss=0.4, accuracy=0.9, seconds=2.5)
    session.commit()
    session.refresh(run)
    assert run.epochs_done == 2


def test_epoch_rows_are_unique_per_run(session: Session) -> None:
    run = make_run(session, status=RunStatus.RUNNING, epochs_done=1)
    session.add(Epoch(run_id=run.id, epoch=1, loss=1.0, accuracy=0.5, seconds=1.0))
    with pytest.raises(IntegrityError):
        session.flush()


def test_claim_is_exclusive_until_the_heartbeat_goes_stale(session: Session) -> None:
    run = make_run(session)
    assert claim_run(session, run.id, "a@host", stale_after=60)
    session.commit()
    assert not claim_run(session, run.id, "b@host", stale_after=60)
    session.execute(
        update(Run).where(Run.id == run.id).values(heartbeat_at=utcnow() - timedelta(seconds=120))
    )
    assert claim_run(session, run.id, "b@host", stale_after=60)
    session.commit()
    session.refresh(run)
    assert (run.worker, run.attempt, run.status) == ("b@host", 2, RunStatus.RUNNING)


def test_finished_runs_are_never_claimed(session: Session) -> None:
    run = make_run(session, status=RunStatus.SUCCEEDED, test_accuracy=0.9, test_loss=0.3)
    assert not claim_run(session, run.id, "a@host", stale_after=0)


def test_cancel_a_queued_run_finishes_it(session: Session) -> None:
    run = make_run(session)
    request_cancel(session, run.id)
    session.commit()
    session.refresh(run)
    assert run.status == RunStatus.CANCELLED and run.finished_at is not None
    assert not claim_run(session, run.id, "a@host", stale_after=60)


def test_cancel_a_running_run_asks_it_to_stop(session: Session) -> None:
    run = make_run(session, status=RunStatus.RUNNING)
    request_cancel(session, run.id)
    session.commit()
    session.refresh(run)
    assert run.status == RunStatus.RUNNING and run.cancel_requested


@pytest.mark.parametrize("status", [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED])
def test_cancel_a_finished_run_is_a_conflict(session: Session, status: RunStatus) -> None:
    run = make_run(session, status=status)
    with pytest.raises(Conflict):
        request_cancel(session, run.id)


def test_missing_run_is_not_found(session: Session) -> None:
    with pytest.raises(NotFound):
        get_run(session, 12345)


def test_stale_running_runs_are_failed_with_a_reason(session: Session) -> None:
    fresh = make_run(session, status=RunStatus.RUNNING)
    stale = make_run(session, status=RunStatus.RUNNING)
    session.execute(
        update(Run).where(Run.id == stale.id).values(heartbeat_at=utcnow() - timedelta(minutes=10))
    )
    assert fail_abandoned_runs(session, stale_after=60) == [stale.id]
    session.commit()
    assert get_run(session, stale.id).status == RunStatus.FAILED
    assert "heartbeat" in (get_run(session, stale.id).error or "")
    assert get_run(session, fresh.id).status == RunStatus.RUNNING


def test_queue_position_counts_older_queued_runs(session: Session) -> None:
    first, second, third = (make_run(session) for _ in range(3))
    request_cancel(session, first.id)
    session.commit()
    cancelled = get_run(session, first.id)
    assert queue_positions(session, [second, third, cancelled]) == {second.id: 1, third.id: 2}
    running = make_run(session, status=RunStatus.RUNNING)
    fourth = make_run(session)
    runs = [get_run(session, first.id), second, running, third, fourth]
    assert queue_positions(session, runs) == {second.id: 1, third.id: 2, fourth.id: 3}
    assert queue_positions(session, [fourth]) == {fourth.id: 3}


def test_finish_stores_the_evaluation(session: Session) -> None:
    run = make_run(session, status=RunStatus.RUNNING)
    evaluation = {
        "confusion_matrix": [[1, 0], [0, 1]],
        "per_class_accuracy": [1.0, 1.0],
        "misclassified": [],
    }
    finish_run(
        session,
        run.id,
        RunStatus.SUCCEEDED,
        test_loss=0.1,
        test_accuracy=0.99,
        evaluation=evaluation,
    )
    session.commit()
    session.expire_all()
    stored = get_run(session, run.id)
    assert stored.evaluation is not None and stored.evaluation.confusion_matrix == [[1, 0], [0, 1]]
    assert stored.finished_at is not None and stored.finished_at.tzinfo is not None
    assert session.scalar(select(func.count()).select_from(Run)) == 1
