"""Leases on the real database: one holder at a time, fenced writes, take-back, lost messages."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import Float, event, func, literal, select, text, update
from sqlalchemy.orm import Session

from shared.domain.lease import CancelRequested, EpochRecord, Lease, LeaseLost, Signals
from shared.domain.metrics import (
    EPOCH_DURATION,
    HISTOGRAMS,
    QUEUE_WAIT,
    RUN_DURATION,
    RUNS_FINISHED,
    HistogramSpec,
)
from shared.domain.status import RunStatus
from shared.store.clock import db_now
from shared.store.engine import Store
from shared.store.lease import (
    LeaseKeeper,
    claim,
    finish,
    last_checkpoint,
    record_epoch,
    release,
    renew,
    resume_point,
)
from shared.store.metrics import histogram_rows, totals
from shared.store.models import Checkpoint, Epoch, Run, TrainedModel, utcnow
from shared.store.queries import epochs_of, get_run
from shared.store.runs import mark_sent, request_cancel
from shared.store.sweeps import take_back, unsent
from tests.builders import epoch_record, lease_of, make_run


@contextmanager
def _statements(store: Store) -> Iterator[list[str]]:
    """The SQL of every statement the store sends meanwhile."""
    sent: list[str] = []

    def record(*args: object) -> None:
        sent.append(str(args[2]))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(store.engine, "before_cursor_execute", record)


def _expire(session: Session, run: Run) -> Run:
    session.execute(
        update(Run).where(Run.id == run.id).values(lease_expires_at=utcnow() - timedelta(seconds=1))
    )
    session.commit()
    session.refresh(run)
    return run


def test_only_a_queued_run_is_claimed_and_each_claim_is_a_new_attempt(session: Session) -> None:
    run = make_run(session)
    first = claim(session, run.id, "a@host", pid=11, seconds=30)
    session.commit()
    assert first is not None and first.attempt == 1
    assert claim(session, run.id, "b@host", pid=12, seconds=30) is None  # running: the holder's
    session.refresh(run)
    assert (run.worker, run.worker_pid, run.status) == ("a@host", 11, RunStatus.RUNNING)
    assert run.lease_expires_at is not None and run.lease_expires_at > utcnow()
    assert take_back(session, _expire(session, run), "lease expired", max_attempts=3)
    second = claim(session, run.id, "b@host", pid=12, seconds=30)
    assert second is not None and second.attempt == 2


def test_fenced_writes_of_an_old_attempt_are_refused(session: Session) -> None:
    run = make_run(session, status=RunStatus.RUNNING, epochs_done=1)
    old = lease_of(run)
    assert take_back(session, _expire(session, run), "lease expired", max_attempts=3)
    new = claim(session, run.id, "b@host", pid=2, seconds=30)
    session.commit()
    assert new is not None
    for write in (
        lambda: renew(session, old),
        lambda: record_epoch(session, old, epoch_record(2), b"stale"),
        lambda: finish(session, old, RunStatus.SUCCEEDED, test_accuracy=1.0),
        lambda: release(session, old),
    ):
        with pytest.raises(LeaseLost):
            write()
        session.rollback()
    record_epoch(session, new, epoch_record(2), b"fresh")
    session.commit()
    assert [(e.epoch, e.attempt) for e in epochs_of(session, run.id)] == [(1, 1), (2, 2)]
    checkpoint = last_checkpoint(session, run.id)
    assert checkpoint is not None and checkpoint.state == b"fresh"
    # A later attempt resumes from it; a first attempt has none to read and reads none.
    assert resume_point(session, new) is checkpoint
    assert resume_point(session, Lease(run.id, 1, "c@host", 30)) is None


def test_an_epoch_write_is_one_statement_on_postgresql_and_a_refused_one_writes_nothing(
    store: Store, session: Session
) -> None:
    # 200 nodes share a few dozen server connections: an epoch write holds one for a single
    # round trip. Its parts (epoch, checkpoint, totals) land only when the fence lets it in.
    run = make_run(session, status=RunStatus.RUNNING)
    lease, before = lease_of(run), totals(session)
    with _statements(store) as statements, store.statement_scope() as unit:
        record_epoch(unit, lease, EpochRecord(1, loss=0.5, accuracy=0.8, seconds=0.3), b"w1")
    if store.engine.dialect.name == "postgresql":
        assert len(statements) == 1, statements
    after = totals(session)
    assert after[(EPOCH_DURATION.name, "0.5")] == before.get((EPOCH_DURATION.name, "0.5"), 0) + 1
    sum_key = (EPOCH_DURATION.sum_name, "")
    assert after[sum_key] == pytest.approx(before.get(sum_key, 0) + 0.3)
    session.expire_all()
    assert get_run(session, run.id).epochs_done == 1
    stale = Lease(run.id, lease.attempt - 1, lease.worker, lease.seconds)
    with pytest.raises(LeaseLost), store.statement_scope() as unit:
        record_epoch(unit, stale, epoch_record(2), b"stale")
    request_cancel(session, run.id)
    session.commit()
    with pytest.raises(CancelRequested), store.statement_scope() as unit:
        record_epoch(unit, lease, epoch_record(2), b"late")
    assert totals(session) == after
    assert [e.epoch for e in epochs_of(session, run.id)] == [1]
    checkpoint = last_checkpoint(session, run.id)
    assert checkpoint is not None and (checkpoint.epoch, checkpoint.state) == (1, b"w1")


def test_a_claim_and_a_finish_are_one_statement_each_on_postgresql_and_count_alike(
    store: Store, session: Session
) -> None:
    # A claim and a run's end hold a pooled server connection for one round trip on
    # PostgreSQL; what they count (the queue wait, the end and the time on workers, each in the
    # bucket Python's HistogramSpec.bucket picks) is the same on either path.
    run = make_run(session)
    session.execute(
        update(Run).where(Run.id == run.id).values(sent_at=db_now(-7.0), created_at=db_now(-9.0))
    )
    session.commit()
    before = totals(session)
    with _statements(store) as claimed, store.statement_scope() as unit:
        lease = claim(unit, run.id, "a@host", pid=3, seconds=30)
    assert lease is not None and lease.attempt == 1
    session.execute(update(Run).where(Run.id == run.id).values(started_at=db_now(-45.0)))
    session.commit()
    record_epoch(session, lease, epoch_record(1), b"w1")
    session.commit()
    evaluation = {"confusion_matrix": [[1, 0], [0, 1]], "per_class_accuracy": [1.0, 1.0]}
    evaluation["misclassified"] = [{"index": 3, "label": 1, "predicted": 0}]
    with _statements(store) as ended, store.statement_scope() as unit:
        finish(
            unit,
            lease,
            RunStatus.SUCCEEDED,
            test_loss=0.2,
            test_accuracy=0.9,
            evaluation=evaluation,
            keras_file=b"model",
        )
    if store.engine.dialect.name == "postgresql":
        assert (len(claimed), len(ended)) == (1, 1), claimed + ended
    after = totals(session)
    added = {
        key: after[key] - before.get(key, 0.0) for key in after if after[key] != before.get(key)
    }
    assert added.pop((QUEUE_WAIT.name, QUEUE_WAIT.bucket(7.5))) == 1
    assert added.pop((QUEUE_WAIT.sum_name, "")) == pytest.approx(7.0, abs=1.0)
    assert added.pop((RUN_DURATION.name, RUN_DURATION.bucket(45.5))) == 1
    assert added.pop((RUN_DURATION.sum_name, "")) == pytest.approx(45.0, abs=2.0)
    assert added.pop((RUNS_FINISHED, "succeeded")) == 1
    assert set(added) == {(EPOCH_DURATION.name, "2.5"), (EPOCH_DURATION.sum_name, "")}
    session.expire_all()
    ended = get_run(session, run.id)
    assert (ended.status, ended.test_accuracy, ended.lease_expires_at) == (
        RunStatus.SUCCEEDED,
        0.9,
        None,
    )
    assert last_checkpoint(session, run.id) is None
    assert ended.evaluation is not None and ended.evaluation.misclassified[0]["index"] == 3
    model = session.get(TrainedModel, run.id)
    assert model is not None and (model.keras_file, model.size) == (b"model", 5)
    # A finish refused by the fence, and a claim of a run no longer queued, write nothing.
    with pytest.raises(LeaseLost), store.statement_scope() as unit:
        finish(unit, lease, RunStatus.FAILED, error="late")
    with store.statement_scope() as unit:
        assert claim(unit, run.id, "b@host", pid=4, seconds=30) is None
    assert totals(session) == after


@pytest.mark.parametrize("histogram", HISTOGRAMS, ids=lambda h: h.name)
def test_the_database_picks_the_bucket_python_picks(
    session: Session, histogram: HistogramSpec
) -> None:
    # On PostgreSQL a write's observations are bucketed by the database (a CASE over the
    # bounds), in a unit of work by Python: on each bound, either side of it, and far beyond,
    # they agree.
    near = [b * f for b in histogram.bounds for f in (0.999, 1.0, 1.001)]
    values = [0.0, *near, 10 * histogram.bounds[-1]]
    labels = session.execute(
        select(*(histogram_rows(histogram, literal(v, Float()))[0][1] for v in values))
    ).one()
    assert list(labels) == [histogram.bucket(v) for v in values]


def test_an_epoch_rewritten_by_a_resumed_attempt_replaces_the_old_row(session: Session) -> None:
    run = make_run(session, status=RunStatus.RUNNING, epochs_done=2)
    assert take_back(session, _expire(session, run), "lease expired", max_attempts=3)
    lease = claim(session, run.id, "b@host", pid=2, seconds=30)
    assert lease is not None
    record_epoch(session, lease, EpochRecord(2, loss=0.25, accuracy=0.9, seconds=1.0))
    session.commit()
    rows = epochs_of(session, run.id)
    assert [(e.epoch, e.attempt, e.loss) for e in rows] == [(1, 1, 1.0), (2, 2, 0.25)]
    assert session.scalar(select(func.count()).select_from(Epoch)) == 2


def test_no_epoch_is_recorded_once_a_cancel_is_accepted(session: Session) -> None:
    run = make_run(session, status=RunStatus.RUNNING, epochs_done=1)
    lease = lease_of(run)
    request_cancel(session, run.id)
    session.commit()
    with pytest.raises(CancelRequested):
        record_epoch(session, lease, epoch_record(2))
    session.rollback()
    with pytest.raises(CancelRequested):
        finish(session, lease, RunStatus.SUCCEEDED, test_accuracy=0.9)
    session.rollback()
    finish(session, lease, RunStatus.CANCELLED)
    session.commit()
    assert get_run(session, run.id).status == RunStatus.CANCELLED
    assert [e.epoch for e in epochs_of(session, run.id)] == [1]


def test_finish_keeps_the_model_and_drops_the_checkpoint(session: Session) -> None:
    run = make_run(session, status=RunStatus.RUNNING)
    lease = lease_of(run)
    record_epoch(session, lease, epoch_record(1), b"weights")
    session.commit()
    assert last_checkpoint(session, run.id) is not None
    finish(session, lease, RunStatus.SUCCEEDED, test_accuracy=0.9, keras_file=b"PK model")
    session.commit()
    assert session.get(Checkpoint, run.id) is None
    model = session.get(TrainedModel, run.id)
    assert model is not None and model.keras_file == b"PK model" and model.size == 8


def test_renew_reports_cancel_and_handover(session: Session) -> None:
    run = make_run(session, status=RunStatus.RUNNING)
    lease = lease_of(run)
    signals = renew(session, lease)
    assert not signals.cancel and not signals.handover
    session.execute(update(Run).where(Run.id == run.id).values(handover_requested=True))
    assert renew(session, lease).handover
    request_cancel(session, run.id)
    assert renew(session, lease).cancel


def test_a_keeper_renews_once_due_and_between_renewals_only_reads_the_flags(
    store: Store, session: Session
) -> None:
    # A job looks at its lease every second; writing the run's row each time was 200 jobs'
    # 200 updates a second for a lease of 30 s.
    run = make_run(session, status=RunStatus.RUNNING)
    keeper = LeaseKeeper(lease_of(run), every=0.4)
    assert LeaseKeeper(Lease(run.id, 1, "a@host", 0.6), every=3.0).every == pytest.approx(0.2)

    def expiry() -> object:
        session.expire_all()
        return get_run(session, run.id).lease_expires_at

    def look() -> tuple[Signals, list[str]]:
        with _statements(store) as sent, store.autocommit() as connection:
            signals = keeper.check(connection)
        return signals, [statement.lstrip().split()[0].upper() for statement in sent]

    first = expiry()
    assert look() == (Signals(cancel=False, handover=False), ["SELECT"])  # not due: flags only
    assert expiry() == first
    session.execute(update(Run).where(Run.id == run.id).values(handover_requested=True))
    session.commit()
    assert look() == (Signals(cancel=False, handover=True), ["SELECT"])
    time.sleep(0.45)
    assert look() == (Signals(cancel=False, handover=True), ["UPDATE"])  # due: renewed
    renewed = expiry()
    assert renewed is not None and first is not None and renewed > first
    keeper.renewed()  # an epoch's write renewed it: the next look only reads
    assert look()[1] == ["SELECT"] and expiry() == renewed
    assert take_back(session, _expire(session, run), "lease expired", max_attempts=3)
    session.commit()
    with pytest.raises(LeaseLost), store.autocommit() as connection:
        keeper.check(connection)  # a read sees the lost lease as a renewal would


def test_a_renewal_touches_no_index_and_waits_for_no_wal_flush_of_its_own(
    store: Store, session: Session
) -> None:
    # 200 jobs renew 400 times a second: each renewal an in-place (HOT) update, and a commit
    # that does not queue behind the disk. Nothing else in its connection's next transaction
    # inherits that (through PgBouncer the next transaction may be another client's).
    renewed = {"heartbeat_at", "lease_expires_at"}
    for index in Run.__table__.indexes:
        assert not renewed & {column.name for column in index.columns}, index.name
    run = make_run(session, status=RunStatus.RUNNING)
    expired = run.lease_expires_at
    with store.engine.connect() as connection:
        assert not renew(connection, lease_of(run)).cancel
        postgres = store.engine.dialect.name == "postgresql"
        if postgres:
            assert connection.scalar(text("SHOW synchronous_commit")) == "off"
        connection.commit()
        if postgres:
            assert connection.scalar(text("SHOW synchronous_commit")) == "on"
    session.expire_all()
    assert expired is not None and get_run(session, run.id).lease_expires_at > expired


def test_release_requeues_without_counting_a_lost_attempt(session: Session) -> None:
    run = make_run(session, status=RunStatus.RUNNING, epochs_done=1)
    assert release(session, lease_of(run)) == "training"
    session.commit()
    session.refresh(run)
    assert run.status == RunStatus.QUEUED and run.worker is None and run.lost_attempts == []
    assert run.sends == 1 and run.sent_at is not None


def test_take_back_requeues_then_fails_naming_every_lost_attempt(session: Session) -> None:
    run = make_run(session, status=RunStatus.RUNNING, worker="w1@a")
    for attempt in (1, 2, 3):
        session.refresh(run)
        requeued = take_back(session, _expire(session, run), f"reason {attempt}", max_attempts=3)
        session.commit()
        session.refresh(run)
        if attempt < 3:
            assert requeued and run.status == RunStatus.QUEUED
            assert claim(session, run.id, f"w{attempt + 1}@a", pid=1, seconds=30) is not None
            session.commit()
        else:
            assert not requeued and run.status == RunStatus.FAILED
    assert [x["attempt"] for x in run.lost_attempts] == [1, 2, 3]
    error = run.error or ""
    assert "gave up after 3 lost attempts" in error
    for attempt, worker in ((1, "w1@a"), (2, "w2@a"), (3, "w3@a")):
        assert f"attempt {attempt} on {worker}: reason {attempt}" in error


def test_take_back_changes_nothing_a_live_holder_renewed(session: Session) -> None:
    run = make_run(session, status=RunStatus.RUNNING)
    seen_by_sweep = _expire(session, run)  # the sweep read the run while its lease had lapsed
    session.expunge(seen_by_sweep)
    renew(session, lease_of(run))  # then the holder woke up and renewed first
    session.commit()
    assert not take_back(session, seen_by_sweep, "lease expired", max_attempts=3)
    session.commit()
    renew(session, lease_of(run))  # still the holder's
    assert get_run(session, run.id).lost_attempts == []


def test_a_cancelled_run_whose_holder_vanished_ends_cancelled(session: Session) -> None:
    run = make_run(session, status=RunStatus.RUNNING, epochs_done=2)
    request_cancel(session, run.id)
    session.commit()
    assert not take_back(session, _expire(session, run), "lease expired", max_attempts=3)
    session.commit()
    session.refresh(run)
    assert run.status == RunStatus.CANCELLED and run.epochs_done == 2


def test_unsent_picks_the_oldest_sent_runs_the_broker_lacks(session: Session) -> None:
    runs = [make_run(session) for _ in range(4)]
    long_ago = utcnow() - timedelta(minutes=5)
    for n, run in enumerate(runs):
        mark_sent(session, run.id, f"task-{n}")
        session.execute(
            update(Run).where(Run.id == run.id).values(sent_at=long_ago + timedelta(seconds=n))
        )
    session.commit()
    # The broker still holds the two newest messages: the two oldest are missing.
    assert unsent(session, "training", in_broker=2, grace=15) == [runs[0].id, runs[1].id]
    session.commit()
    # Marked as sent again, so a second sweep counts them as the newest: nothing more to send.
    assert unsent(session, "training", in_broker=4, grace=15) == []
    assert unsent(session, "other-queue", in_broker=0, grace=15) == []


def test_unsent_waits_for_a_message_that_may_be_on_its_way(session: Session) -> None:
    run = make_run(session)
    mark_sent(session, run.id, "task")
    session.commit()
    assert unsent(session, "training", in_broker=0, grace=15) == []
    session.execute(
        update(Run).where(Run.id == run.id).values(sent_at=utcnow() - timedelta(seconds=20))
    )
    assert unsent(session, "training", in_broker=0, grace=15) == [run.id]
