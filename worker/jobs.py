"""What the training task does, as plain functions: claim the run, train it epoch by epoch under
its lease, record each epoch with a checkpoint, and finish, hand over or stop as the store says."""

from __future__ import annotations

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
from shared.store.engine import Store, unreachable
from shared.store.lease import (
    claim,
    finish,
    last_checkpoint,
    pass_on,
    record_environment,
    record_epoch,
    release,
    renew,
)
from shared.store.queries import get_run
from worker.process import WorkerContext

logger = logging.getLogger(__name__)

# How often a training job reads its run's cancel and handover flags: a cancel is honoured within
# this plus one batch.
WATCH_INTERVAL = 0.5
# How long a job waits before it tries a write again while the store is unreachable.
STORE_RETRY_INTERVAL = 1.0

T = TypeVar("T")


class Outcome(enum.StrEnum):
    """How one execution of the task ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
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

    It renews the lease every `heartbeat` seconds and reads the cancel and handover flags every
    WATCH_INTERVAL; when the run must stop it calls `on_stop` once (the trainer then ends at its
    next batch) and keeps the reason in `stop`.
    """

    def __init__(
        self, store: Store, lease: Lease, heartbeat: float, on_stop: Callable[[], None]
    ) -> None:
        self.store, self.lease, self.heartbeat, self.on_stop = store, lease, heartbeat, on_stop
        self.stop: Stop | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"watch-{lease.run_id}", daemon=True
        )

    def _loop(self) -> None:
        renewed = time.monotonic()
        while not self._done.wait(min(WATCH_INTERVAL, self.heartbeat)):
            try:
                with self.store.session_scope() as session:
                    signals = renew(session, self.lease)
                renewed = time.monotonic()
            except LeaseLost:
                self._stop(Stop.LOST)
                return
            except Exception:
                # The store is unreachable: keep training; the lease lapses if this lasts.
                logger.exception("run %s: lease renewal failed", self.lease.run_id)
                if time.monotonic() - renewed > self.lease.seconds:
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
    with store.session_scope() as session:
        lease = claim(
            session, run_id, worker, os.getpid(), context.settings.heartbeat_timeout, node_pid
        )
        if lease is None:
            pass_to = pass_on(session, run_id, worker, node_pid)
        else:
            params = Hyperparams.model_validate(get_run(session, run_id).params)
            checkpoint = last_checkpoint(session, run_id)
            resume = (checkpoint.epoch, checkpoint.state) if checkpoint else None
    if lease is None:
        if pass_to is None:
            logger.info("run %s is not queued; dropping the message", run_id)
        else:
            context.send(run_id, pass_to)
            logger.info(
                "run %s: %s is stopping; its message goes to another worker", run_id, worker
            )
        return Outcome.SKIPPED
    logger.info(
        "run %s claimed by %s (attempt %d%s): %s",
        run_id,
        worker,
        lease.attempt,
        f", resuming after epoch {resume[0]}" if resume else "",
        params.model_dump(),
    )
    try:
        return _train(context, store, lease, params, resume)
    except LeaseLost:
        logger.warning("run %s: attempt %d lost its lease; it writes nothing more", *_ids(lease))
        return Outcome.LOST
    except CancelRequested:
        return _end(store, lease, RunStatus.CANCELLED)
    except Exception as exc:
        logger.exception("run %s failed", run_id)
        return _end(store, lease, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")


def _ids(lease: Lease) -> tuple[int, int]:
    return lease.run_id, lease.attempt


def _write(
    store: Store, write: Callable[..., T], lease: Lease, *args: object, **kwargs: object
) -> T:
    """`write(session, lease, ...)`, a fenced write, tried again while the store is unreachable:
    a database restart or failover must not fail a run. Training waits meanwhile; an outage that
    outlasts the lease is a lost lease, and the sweeps give the run a new attempt once the store
    is back."""
    deadline = time.monotonic() + lease.seconds
    while True:
        try:
            with store.session_scope() as session:
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
        _write(store, finish, lease, status, error=error)
    except (LeaseLost, CancelRequested):
        logger.warning("run %s: attempt %d no longer holds it; not marked %s", *_ids(lease), status)
        return Outcome.LOST
    return Outcome(status.value)


def _train(
    context: WorkerContext,
    store: Store,
    lease: Lease,
    params: Hyperparams,
    resume: tuple[int, bytes] | None,
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

    def record(metrics: EpochRecord) -> None:
        state = job.state(metrics.epoch, context.settings.checkpoint_max_bytes)
        _write(store, record_epoch, lease, metrics, state)
        logger.info("run %s epoch %d: loss %.4f", lease.run_id, metrics.epoch, metrics.loss)

    with Watch(store, lease, context.settings.heartbeat_interval, job.request_stop) as watch:
        job.train_epochs(record, should_stop=lambda: watch.stop is not None, first=first)
        stop = watch.stop
    if stop is Stop.LOST:
        raise LeaseLost(lease)
    if stop is Stop.CANCEL:
        raise CancelRequested(lease)
    if stop is Stop.HANDOVER:
        return _hand_over(context, store, lease)
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
    )
    logger.info("run %s succeeded: test accuracy %.4f", lease.run_id, accuracy)
    return Outcome.SUCCEEDED


def _hand_over(context: WorkerContext, store: Store, lease: Lease) -> Outcome:
    """Put the run back in the queue with a new message: its last finished epoch is saved."""
    queue = _write(store, release, lease)
    context.send(lease.run_id, queue)
    logger.info("run %s handed back to the queue (its worker is stopping)", lease.run_id)
    return Outcome.HANDED_OVER
