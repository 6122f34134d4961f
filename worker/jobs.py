"""What the training task does, as plain functions: claim the run, train it epoch by epoch under
its lease, record each epoch with a checkpoint, and finish, hand over or stop as the store says."""

from __future__ import annotations

import contextvars
import enum
import logging
import os
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from shared.domain.errors import DatasetError
from shared.domain.lease import CancelRequested, EpochRecord, Lease, LeaseLost
from shared.domain.params import Hyperparams
from shared.domain.status import RunStatus
from shared.ops.logs import add_job_fields
from shared.store.engine import Store, unreachable
from shared.store.lease import (
    LeaseKeeper,
    claim,
    finish,
    pass_on,
    record_environment,
    record_epoch,
    release,
    resume_point,
)
from shared.store.queries import get_run
from shared.store.search import (
    Decision,
    after_end,
    best_model,
    claim_test,
    due_test,
    finish_trial,
    record_test,
    report_epoch,
    study_of,
)
from worker.process import WorkerContext

logger = logging.getLogger(__name__)

# How often a training job reads its run's cancel and handover flags: a cancel is honoured within
# this plus one batch. Every job's read is a statement to the store: 200 jobs reading twice a
# second sent half of a cluster's statements (bench.control_plane).
WATCH_INTERVAL = 1.0
# How long a job waits before it tries a write again while the store is unreachable.
STORE_RETRY_INTERVAL = 1.0

T = TypeVar("T")


class Outcome(enum.StrEnum):
    """How one execution of the task ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PRUNED = "pruned"  # a search stopped the trial on its validation metric
    HANDED_OVER = "handed over"  # its worker is shutting down: back in the queue, not a loss
    LOST = "lost"  # another attempt holds the run now: this one wrote nothing more
    SKIPPED = "skipped"  # not queued (running elsewhere, finished, missing): nothing to do


class Stop(enum.Enum):
    """Why a job stops before its last epoch."""

    CANCEL = "cancel"
    HANDOVER = "handover"
    LOST = "lost"


class Watch:
    """A thread that keeps the lease and reads the run's flags while the job trains.

    It reads the cancel and handover flags every WATCH_INTERVAL and renews the lease in the same
    statement every `heartbeat` seconds (`LeaseKeeper`; an epoch's write renews it too); when the
    run must stop it calls `on_stop` once (the trainer then ends at its next batch) and keeps the
    reason in `stop`.
    """

    def __init__(
        self, store: Store, lease: Lease, heartbeat: float, on_stop: Callable[[], None]
    ) -> None:
        self.store, self.lease, self.heartbeat, self.on_stop = store, lease, heartbeat, on_stop
        self.keeper = LeaseKeeper(lease, heartbeat)
        self.stop: Stop | None = None
        self._done = threading.Event()
        # The thread runs in a copy of this context: its log lines name the job too.
        self._thread = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._loop,),
            name=f"watch-{lease.run_id}",
            daemon=True,
        )

    def _loop(self) -> None:
        reached = time.monotonic()
        while not self._done.wait(min(WATCH_INTERVAL, self.heartbeat)):
            try:
                with self.store.autocommit() as connection:
                    signals = self.keeper.check(connection)
                reached = time.monotonic()
            except LeaseLost:
                self._stop(Stop.LOST)
                return
            except Exception:
                # The store is unreachable: keep training; the lease lapses if this lasts.
                logger.exception("run %s: lease renewal failed", self.lease.run_id)
                if time.monotonic() - reached > self.lease.seconds:
                    self._stop(Stop.LOST)
                    return
                continue
            if signals.cancel:
                self._stop(Stop.CANCEL)
            elif signals.handover:
                self._stop(Stop.HANDOVER)

    def _stop(self, reason: Stop) -> None:
        if self.stop is None:
            self.stop = reason
            logger.info("run %s: stopping (%s)", self.lease.run_id, reason.value)
            self.on_stop()

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done.set()
        self._thread.join()


def execute_run(context: WorkerContext, run_id: int, worker: str) -> Outcome:
    """Train one run under a lease and record every step; return how it ended.

    Safe to call for any message: only a queued run is claimed. Every write is fenced by the
    lease, so an attempt that lost it (its worker froze past the lease, say) writes nothing more.

    The job holds one database connection, named after it, for its writes and its lease's
    renewals (they take turns), and none once it ends: an idle pool process holds none.
    """
    store = context.store.sibling(f"trainyard-job/{run_id}/{worker}")
    try:
        return _execute(context, store, run_id, worker)
    finally:
        store.close()


def _execute(context: WorkerContext, store: Store, run_id: int, worker: str) -> Outcome:
    node_pid = os.getppid()  # a prefork pool process: its node is the parent
    with store.statement_scope() as connection:
        lease = claim(
            connection, run_id, worker, os.getpid(), context.settings.heartbeat_timeout, node_pid
        )
    with store.session_scope() as session:
        if lease is None:
            pass_to = pass_on(session, run_id, worker, node_pid)
        else:
            params = Hyperparams.model_validate(get_run(session, run_id).params)
            checkpoint = resume_point(session, lease)
            resume = (checkpoint.epoch, checkpoint.state) if checkpoint else None
            trial = study_of(session, run_id) is not None
    if lease is None:
        if pass_to is None and (study_id := _due_test(store, run_id)) is not None:
            test_best(context, store, study_id)
        elif pass_to is None:
            logger.info("run %s is not queued; dropping the message", run_id)
        else:
            context.send(run_id, pass_to)
            logger.info(
                "run %s: %s is stopping; its message goes to another worker", run_id, worker
            )
        return Outcome.SKIPPED
    add_job_fields(attempt=lease.attempt)
    logger.info(
        "run %s claimed by %s (attempt %d%s): %s",
        run_id,
        worker,
        lease.attempt,
        f", resuming after epoch {resume[0]}" if resume else "",
        params.model_dump(),
    )
    try:
        return _train(context, store, lease, params, resume, trial)
    except LeaseLost:
        logger.warning("run %s: attempt %d lost its lease; it writes nothing more", *_ids(lease))
        return Outcome.LOST
    except CancelRequested:
        return _ended(context, store, lease, RunStatus.CANCELLED)
    except Exception as exc:
        logger.exception("run %s failed", run_id)
        return _ended(context, store, lease, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")


def _ids(lease: Lease) -> tuple[int, int]:
    return lease.run_id, lease.attempt


def _write(
    store: Store,
    write: Callable[..., T],
    lease: Lease,
    *args: object,
    alone: bool = False,
    **kwargs: object,
) -> T:
    """`write(session, lease, ...)`, a fenced write, tried again while the store is unreachable:
    a database restart or failover must not fail a run. Training waits meanwhile; an outage that
    outlasts the lease is a lost lease, and the sweeps give the run a new attempt once the store
    is back. `alone`: the write is one statement on PostgreSQL (`Store.statement_scope`): an
    epoch's, a finish's."""
    deadline = time.monotonic() + lease.seconds
    while True:
        try:
            with store.statement_scope() if alone else store.session_scope() as session:
                return write(session, lease, *args, **kwargs)
        except Exception as exc:
            if not unreachable(exc):
                raise
            if time.monotonic() >= deadline:
                raise LeaseLost(lease, "the store was unreachable") from exc
            logger.warning("run %s: the store is unreachable (%s); trying again", lease.run_id, exc)
            time.sleep(STORE_RETRY_INTERVAL)


def _end(store: Store, lease: Lease, status: RunStatus, error: str | None = None) -> Outcome:
    """Finish the run as its holder; a lost lease means another attempt finishes it."""
    try:
        _write(store, finish, lease, status, error=error, alone=True)
    except (LeaseLost, CancelRequested):
        logger.warning("run %s: attempt %d no longer holds it; not marked %s", *_ids(lease), status)
        return Outcome.LOST
    return Outcome(status.value)


def _ended(
    context: WorkerContext,
    store: Store,
    lease: Lease,
    status: RunStatus,
    error: str | None = None,
) -> Outcome:
    """End the run; a search's trial that ended so frees its slot for the next configuration."""
    outcome = _end(store, lease, status, error)
    try:
        with store.session_scope() as session:
            decision = after_end(session, lease.run_id)
        _settle(context, store, decision)
    except Exception:
        logger.exception("run %s: the search's next trial waits for a sweep", lease.run_id)
    return outcome


def _settle(context: WorkerContext, store: Store, decision: Decision) -> None:
    """After a search's decision is committed: send the new trials, read the best's test set."""
    for run_id, queue in decision.send:
        context.send(run_id, queue)
    if decision.test_study is not None:
        test_best(context, store, decision.test_study)


def _due_test(store: Store, run_id: int) -> int | None:
    """The search whose chosen best is `run_id` and awaits its test reading (a sweep's message)."""
    with store.session_scope() as session:
        return due_test(session, run_id)


def test_best(context: WorkerContext, store: Store, study_id: int) -> bool:
    """Evaluate a finished search's best on the test set, once: the only time a search reads it.
    On the job's own store (its one connection)."""
    with store.session_scope() as session:
        run_id = claim_test(session, study_id)
        keras_file = best_model(session, run_id) if run_id is not None else None
    if run_id is None or keras_file is None or context.training.data is None:
        return False
    from worker.training.model import evaluate_keras_file

    loss, accuracy, evaluation = evaluate_keras_file(keras_file, context.training.data)
    with store.session_scope() as session:
        confirmations = record_test(session, study_id, run_id, loss, accuracy, evaluation)
        send = [(run.id, run.queue) for run in confirmations or []]
    for confirmation, queue in send:
        context.send(confirmation, queue)
    logger.info("search %s: best run %s test accuracy %.4f", study_id, run_id, accuracy)
    return confirmations is not None


def _train(
    context: WorkerContext,
    store: Store,
    lease: Lease,
    params: Hyperparams,
    resume: tuple[int, bytes] | None,
    trial: bool = False,
) -> Outcome:
    training = context.training
    if training.data is None:
        raise DatasetError(training.dataset_error or "MNIST is not available")
    _write(store, record_environment, lease, training.environment)
    from worker.training.model import Job

    job = Job(params, training.data)
    first = 1
    if resume is not None:
        first = job.restore(resume[1]) + 1

    pruned: list[Decision] = []

    def record(metrics: EpochRecord) -> None:
        state = job.state(metrics.epoch, context.settings.checkpoint_max_bytes)
        if trial:
            # The epoch and the search's "go on?" in one transaction, decided on stored reports.
            decision = _write(store, report_epoch, lease, metrics, state, params.epochs)
            if decision.pruned:
                pruned.append(decision)
        else:
            _write(store, record_epoch, lease, metrics, state, alone=True)
        watch.keeper.renewed()
        logger.info("run %s epoch %d: loss %.4f", lease.run_id, metrics.epoch, metrics.loss)

    def should_stop() -> bool:
        return watch.stop is not None or bool(pruned)

    with Watch(store, lease, context.settings.heartbeat_interval, job.request_stop) as watch:
        job.train_epochs(record, should_stop=should_stop, first=first)
        stop = watch.stop
    if pruned:
        _settle(context, store, pruned[0])
        logger.info("run %s pruned", lease.run_id)
        return Outcome.PRUNED
    if stop is Stop.LOST:
        raise LeaseLost(lease)
    if stop is Stop.CANCEL:
        raise CancelRequested(lease)
    if stop is Stop.HANDOVER:
        return _hand_over(context, store, lease)
    if trial:
        # A search's trial never reads the test set: only the chosen best does, once.
        _settle(context, store, _write(store, finish_trial, lease, job.keras_file()))
        logger.info("run %s: trial complete", lease.run_id)
        return Outcome.SUCCEEDED
    loss, accuracy, evaluation = job.evaluate()
    _write(
        store,
        finish,
        lease,
        RunStatus.SUCCEEDED,
        test_loss=loss,
        test_accuracy=accuracy,
        evaluation=evaluation,
        keras_file=job.keras_file(),
        alone=True,
    )
    logger.info("run %s succeeded: test accuracy %.4f", lease.run_id, accuracy)
    return Outcome.SUCCEEDED


def _hand_over(context: WorkerContext, store: Store, lease: Lease) -> Outcome:
    """Put the run back in the queue with a new message: its last finished epoch is saved."""
    queue = _write(store, release, lease)
    context.send(lease.run_id, queue)
    logger.info("run %s handed back to the queue (its worker is stopping)", lease.run_id)
    return Outcome.HANDED_OVER
