"""The store on a real database (SQLite, or PostgreSQL with TRAINYARD_TEST_DATABASE_URL)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

from shared.domain.errors import Conflict, NotFound
from shared.domain.params import Hyperparams
from shared.domain.status import RunStatus
from shared.store.engine import Store
from shared.store.lease import claim
from shared.store.models import Epoch
from shared.store.queries import get_run, queue_positions
from shared.store.runs import create_run, request_cancel
from tests.builders import make_run


def test_create_run_draws_and_records_a_seed(session: Session) -> None:
    run = create_run(session, Hyperparams())
    session.commit()
    assert run.status == RunStatus.QUEUED
    assert 0 <= run.seed < 2**31
    assert run.params["epochs"] == 5 and run.params["seed"] == run.seed
    assert run.name  # a readable default name


def test_epoch_rows_are_unique_per_run(session: Session) -> None:
    run = make_run(session, status=RunStatus.RUNNING, epochs_done=1)
    session.add(Epoch(run_id=run.id, epoch=1, loss=1.0, accuracy=0.5, seconds=1.0))
    with pytest.raises(IntegrityError):
        session.flush()


def test_cancel_a_queued_run_finishes_it(session: Session) -> None:
    run = make_run(session)
    request_cancel(session, run.id)
    session.commit()
    session.refresh(run)
    assert run.status == RunStatus.CANCELLED and run.finished_at is not None
    assert claim(session, run.id, "a@host", pid=1, seconds=60) is None


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


def test_a_job_store_names_its_connection_reuses_compiled_statements_and_closes(
    store: Store,
) -> None:
    # A pool process's jobs come one after another: each names its connection after itself
    # (pg_stat_activity shows which run holds it), and none recompiles the last one's statements.
    process = Store(store.url)  # a pool process's store, new
    names = []
    for run in (1, 2):
        job = process.sibling(f"trainyard-job/{run}/w@test")
        with job.session_scope() as session:
            session.execute(text(f"SELECT {run}"))
            if job.engine.dialect.name == "postgresql":
                names.append(session.scalar(text("SELECT current_setting('application_name')")))
        cache = job.engine._compiled_cache or {}
        job.close()
        assert isinstance(job.engine.pool, QueuePool)
        assert job.engine.pool.checkedout() == 0 and job.engine.pool.checkedin() == 0
    process.close()
    # The second job's cache still holds the first job's statements beside its own.
    assert len(cache) == 2 + len(names) // 2
    if names:
        assert names == ["trainyard-job/1/w@test", "trainyard-job/2/w@test"]
