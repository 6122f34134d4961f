"""execute_run and the node's sweeps on a real database, training real TensorFlow in this process."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.domain.params import Hyperparams
from shared.domain.status import RunStatus
from shared.store.engine import Store
from shared.store.lease import claim, record_epoch
from shared.store.models import Epoch, Run, TrainedModel, utcnow
from shared.store.runs import request_cancel
from shared.store.sweeps import take_back
from shared.store.workers import register_worker
from tests.builders import make_run
from tests.support.machine import REDIS_URL
from tests.support.runs import read_run
from tests.support.waiting import wait_for
from worker import jobs
from worker.jobs import Outcome
from worker.node import EXPIRED_LEASES, Node
from worker.process import Training, WorkerContext, load_training


class Sent(list[tuple[int, str]]):
    """The messages a context or node would have sent: (run id, queue)."""

    def __call__(self, run_id: int, queue: str) -> None:
        self.append((run_id, queue))


@pytest.fixture()
def sent() -> Sent:
    return Sent()


@pytest.fixture()
def context(settings: Settings, store: Store, sent: Sent) -> WorkerContext:
    """This test process as a worker: the test's store, TensorFlow and MNIST loaded once."""
    return WorkerContext(settings, store, load_training(settings), sent)


@pytest.fixture()
def background(context: WorkerContext) -> Iterator[list[threading.Thread]]:
    """Threads a test starts; joined at the end so no job outlives its test."""
    threads: list[threading.Thread] = []
    yield threads
    for thread in threads:
        thread.join(timeout=120)


def start(threads: list[threading.Thread], context: WorkerContext, run_id: int) -> list[Outcome]:
    """Run execute_run in a thread (as a pool process would); its outcome lands in the list."""
    outcome: list[Outcome] = []
    thread = threading.Thread(
        target=lambda: outcome.append(jobs.execute_run(context, run_id, "inline@test"))
    )
    thread.start()
    threads.append(thread)
    return outcome


def test_a_queued_run_is_trained_recorded_and_its_model_kept(
    context: WorkerContext, session: Session
) -> None:
    run = make_run(session, train_samples=500, epochs=2)
    assert jobs.execute_run(context, run.id, "inline@test") == Outcome.SUCCEEDED
    run = read_run(session, run.id)
    assert run.status == RunStatus.SUCCEEDED and run.worker == "inline@test"
    assert [(e.epoch, e.attempt) for e in run.epoch_rows] == [(1, 1), (2, 1)]
    assert run.evaluation is not None and run.checkpoint is None
    model = session.get(TrainedModel, run.id)
    assert model is not None and model.keras_file[:2] == b"PK"  # a .keras file is a zip


def test_only_queued_runs_are_trained(context: WorkerContext, session: Session) -> None:
    done = make_run(session, status=RunStatus.SUCCEEDED, test_accuracy=0.9, test_loss=0.3)
    held = make_run(session, status=RunStatus.RUNNING, worker="other@host", epochs_done=1)
    for run_id in (done.id, held.id, 424242):
        assert jobs.execute_run(context, run_id, "inline@test") == Outcome.SKIPPED
    after = read_run(session, held.id)
    assert (after.status, after.worker, after.attempt) == (RunStatus.RUNNING, "other@host", 1)


def test_a_run_taken_back_resumes_after_its_last_epoch_as_if_never_stopped(
    context: WorkerContext, session: Session
) -> None:
    from worker.training.model import Job

    params = {"train_samples": 1000, "epochs": 3, "seed": 21}
    whole = make_run(session, **params)
    assert jobs.execute_run(context, whole.id, "inline@test") == Outcome.SUCCEEDED

    # A first attempt trains epoch 1 and checkpoints it, then its host vanishes.
    run = make_run(session, **params)
    lease = claim(session, run.id, "dead@host", pid=1, seconds=30)
    assert lease is not None
    assert context.training.data is not None
    job = Job(Hyperparams(**params), context.training.data)
    metrics = job.train_epoch(1)
    assert metrics is not None
    record_epoch(session, lease, metrics, job.state(1, 2**30))
    session.execute(
        update(Run).where(Run.id == run.id).values(lease_expires_at=utcnow() - timedelta(1))
    )
    assert take_back(session, read_run(session, run.id), "host lost", max_attempts=3)
    session.commit()

    assert jobs.execute_run(context, run.id, "inline@test") == Outcome.SUCCEEDED
    resumed, reference = read_run(session, run.id), read_run(session, whole.id)
    assert [(e.epoch, e.attempt) for e in resumed.epoch_rows] == [(1, 1), (2, 2), (3, 2)]
    assert resumed.lost_attempts[0]["reason"] == "host lost"
    # Stateless per-epoch randomness: the resumed run is the uninterrupted one, figure for figure.
    assert resumed.test_accuracy == reference.test_accuracy
    assert [e.loss for e in resumed.epoch_rows] == pytest.approx(
        [e.loss for e in reference.epoch_rows], rel=1e-5
    )


def test_an_attempt_that_lost_its_lease_stops_and_writes_nothing_more(
    context: WorkerContext, session: Session, background: list[threading.Thread]
) -> None:
    run = make_run(session, train_samples=20000, epochs=30, seed=3)
    outcome = start(background, context, run.id)
    wait_for(lambda: read_run(session, run.id).epochs_done >= 1, 120, what="the first epoch")
    # A sweep decides the holder is gone, and another worker claims the run.
    session.execute(
        update(Run).where(Run.id == run.id).values(lease_expires_at=utcnow() - timedelta(1))
    )
    assert take_back(session, read_run(session, run.id), "frozen", max_attempts=3)
    session.commit()
    taken = utcnow()
    assert claim(session, run.id, "other@host", pid=2, seconds=60) is not None
    session.commit()
    wait_for(lambda: outcome, 30, what="the old attempt to stop")
    assert outcome == [Outcome.LOST]
    after = read_run(session, run.id)
    assert (after.status, after.worker, after.attempt) == (RunStatus.RUNNING, "other@host", 2)
    late = session.scalars(
        select(Epoch).where(Epoch.run_id == run.id, Epoch.recorded_at > taken)
    ).all()
    assert late == [], "the old attempt wrote after losing its lease"


def test_cancel_stops_a_running_job_within_two_seconds_and_no_epoch_after(
    context: WorkerContext, session: Session, background: list[threading.Thread]
) -> None:
    run = make_run(session, train_samples=60000, epochs=30, seed=4)
    outcome = start(background, context, run.id)
    wait_for(lambda: read_run(session, run.id).epochs_done >= 1, 120, what="the first epoch")
    request_cancel(session, run.id)
    session.commit()
    accepted, asked = utcnow(), time.monotonic()
    wait_for(lambda: outcome, 10, interval=0.05, what="the job to stop")
    took = time.monotonic() - asked
    after = read_run(session, run.id)
    assert outcome == [Outcome.CANCELLED] and after.status == RunStatus.CANCELLED
    assert took < 2.0, f"cancel took {took:.2f} s"
    assert all(e.recorded_at <= accepted for e in after.epoch_rows)
    assert after.checkpoint is None


def test_handover_puts_the_run_back_with_its_checkpoint_and_a_new_message(
    context: WorkerContext, session: Session, sent: Sent, background: list[threading.Thread]
) -> None:
    run = make_run(session, train_samples=60000, epochs=30, seed=5)
    outcome = start(background, context, run.id)
    wait_for(lambda: read_run(session, run.id).epochs_done >= 1, 120, what="the first epoch")
    session.execute(update(Run).where(Run.id == run.id).values(handover_requested=True))
    session.commit()
    wait_for(lambda: outcome, 10, interval=0.05, what="the job to hand over")
    after = read_run(session, run.id)
    assert outcome == [Outcome.HANDED_OVER]
    assert after.status == RunStatus.QUEUED and after.lost_attempts == []
    assert after.checkpoint is not None and after.checkpoint.epoch == after.epochs_done
    assert sent == [(run.id, "training")]


def test_a_stopping_node_claims_nothing_more_and_passes_each_message_on(
    context: WorkerContext,
    settings: Settings,
    store: Store,
    session: Session,
    sent: Sent,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A warm shutdown on a polling broker (the embedded one) can still hand the pool a message,
    # such as the one its own handover just sent: that run must go to another worker.
    monkeypatch.setattr(os, "getppid", os.getpid)  # this process is the node and its pool process
    register_worker(session, "inline@test", "host", os.getpid(), 1)
    held = make_run(session, status=RunStatus.RUNNING, worker="inline@test")
    queued = make_run(session)
    session.commit()
    Node("inline@test", settings, store, sent).hand_over()  # SIGTERM
    assert jobs.execute_run(context, queued.id, "inline@test") == Outcome.SKIPPED
    assert sent == [(queued.id, "training")]
    after = read_run(session, queued.id)
    assert (after.status, after.attempt) == (RunStatus.QUEUED, 0)
    assert read_run(session, held.id).handover_requested
    # Another node takes it; so does this one once it starts again (registered anew).
    assert claim(session, queued.id, "other@test", 2, 30, node_pid=os.getpid()) is not None
    register_worker(session, "inline@test", "host", os.getpid(), 1)
    again = make_run(session)
    assert claim(session, again.id, "inline@test", 3, 30, node_pid=os.getpid()) is not None


def test_a_missing_dataset_fails_the_run_with_the_reason(
    context: WorkerContext, session: Session
) -> None:
    broken = Training(1, {}, None, "train-images-idx3-ubyte(.gz) is missing from /nowhere")
    run = make_run(session)
    outcome = jobs.execute_run(
        WorkerContext(context.settings, context.store, broken, context.send), run.id, "w@test"
    )
    assert outcome == Outcome.FAILED
    assert "missing from /nowhere" in (read_run(session, run.id).error or "")


def test_the_node_takes_back_the_runs_of_its_dead_children_at_once(
    settings: Settings, store: Store, session: Session, sent: Sent
) -> None:
    node = Node("node@test", settings, store, sent)
    node.register()
    dead = make_run(session, status=RunStatus.RUNNING, worker="node@test")  # pid 0: not a child
    other = make_run(session, status=RunStatus.RUNNING, worker="other@test")
    beat = node.beat()
    assert beat.holding == {dead.id: 0}
    assert node.sweep(look_at_broker=False, beat=beat) == [dead.id]
    assert sent == [(dead.id, "training")]
    assert read_run(session, dead.id).status == RunStatus.QUEUED
    assert "pool process 0 died" in read_run(session, dead.id).lost_attempts[0]["reason"]
    assert read_run(session, other.id).status == RunStatus.RUNNING  # its lease is still good


def test_a_nodes_idle_interval_is_one_statement_and_sees_its_dead_children(
    settings: Settings, store: Store, session: Session, sent: Sent
) -> None:
    # Through a transaction pooler every statement holds a server connection: 200 nodes'
    # heartbeats must not each open a transaction and look for work in it too.
    node = Node("node@test", settings, store, sent, child_alive=lambda pid: pid == 4242)
    node.register()
    node.sweep(look_at_broker=False, beat=node.beat())  # the first interval: the sweep is due
    held = make_run(session, status=RunStatus.RUNNING, worker="node@test")
    session.execute(update(Run).where(Run.id == held.id).values(worker_pid=4242))
    session.commit()
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    beat = node.beat()
    assert node.sweep(look_at_broker=False, beat=beat) == []
    assert len(statements) == 1, statements
    assert beat.holding == {held.id: 4242} and EXPIRED_LEASES not in beat.due
    # Its process dies (another takes its place): the next interval takes the run back at once.
    session.execute(update(Run).where(Run.id == held.id).values(worker_pid=4343))
    session.commit()
    assert node.sweep(look_at_broker=False, beat=node.beat()) == [held.id]
    assert read_run(session, held.id).status == RunStatus.QUEUED


def test_the_node_resends_messages_the_broker_lost_once(
    settings: Settings, store: Store, session: Session, sent: Sent
) -> None:
    # A queue no message was ever sent to: the broker has none of the queued runs' messages.
    lost = settings.with_overrides(broker_url=REDIS_URL, queue=f"{settings.queue}-lost")
    runs = [make_run(session) for _ in range(3)]
    session.execute(
        update(Run).values(queue=lost.queue, sent_at=utcnow() - timedelta(minutes=1), sends=1)
    )
    session.commit()
    node = Node("node@test", lost, store, sent)
    node.register()
    assert sorted(node.sweep()) == [run.id for run in runs]
    assert node.sweep() == []  # just sent again: not missing (yet)
    assert len(sent) == 3
