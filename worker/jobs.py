"""What the training task does, as plain functions: claim the run, train, record, finish."""

from __future__ import annotations

import enum
import logging
import threading
from types import TracebackType

from shared.db import Store
from shared.errors import DatasetError, NotFound
from shared.models import FINISHED_STATUSES, RunStatus
from shared.params import Hyperparams
from shared.queries import get_run
from shared.runs import (
    claim_run,
    finish_run,
    heartbeat,
    is_stale,
    record_environment,
    record_epoch,
)
from worker.process import WorkerContext

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


class Outcome(enum.StrEnum):
    """How one execution of the task ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # finished, missing or cancelled before it started: nothing to do
    HELD = "held"  # a live worker holds it: look again later
    CLAIMED = "claimed"  # ours to train (never returned by execute_run)


class RunHeartbeat:
    """A thread that refreshes a run's heartbeat and notices a cancel request while it trains."""

    def __init__(self, store: Store, run_id: int, interval: float) -> None:
        self.store = store
        self.run_id = run_id
        self.interval = interval
        self.cancelled = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        """Refresh the heartbeat once, and pick up a cancel request."""
        try:
            with self.store.session_scope() as session:
                if heartbeat(session, self.run_id):
                    self.cancelled.set()
        except Exception:
            logger.exception("heartbeat of run %s failed; retrying", self.run_id)

    def __enter__(self) -> RunHeartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()


def _claim(context: WorkerContext, run_id: int, worker: str) -> tuple[Outcome, Hyperparams | None]:
    timeout = context.settings.heartbeat_timeout
    with context.store.session_scope() as session:
        try:
            run = get_run(session, run_id)
        except NotFound:
            logger.warning("run %s does not exist; dropping its message", run_id)
            return Outcome.SKIPPED, None
        if run.status in FINISHED_STATUSES:
            return Outcome.SKIPPED, None
        lost = run.status == RunStatus.RUNNING and is_stale(run, timeout)
        if lost and run.attempt >= MAX_ATTEMPTS:
            finish_run(
                session,
                run_id,
                RunStatus.FAILED,
                error=f"gave up after {run.attempt} attempts: the worker was lost each time",
            )
            return Outcome.FAILED, None
        if run.cancel_requested:
            if lost:  # cancelled while its worker was lost: nobody else will finish it
                finish_run(session, run_id, RunStatus.CANCELLED)
                return Outcome.CANCELLED, None
            return Outcome.HELD, None
        if not claim_run(session, run_id, worker, timeout):
            session.refresh(run)
            return (Outcome.HELD if run.status == RunStatus.RUNNING else Outcome.SKIPPED), None
        return Outcome.CLAIMED, Hyperparams.model_validate(run.params)


def execute_run(context: WorkerContext, run_id: int, worker: str) -> Outcome:
    """Train one run to the end and record every step; return how it ended.

    Safe to call again for the same run (a redelivered message): a finished run is skipped, a
    run a live worker holds is left alone (HELD), and epochs are upserted.
    """
    outcome, params = _claim(context, run_id, worker)
    if params is None:
        return outcome
    logger.info("run %s claimed by %s: %s", run_id, worker, params.model_dump())
    store, training = context.store, context.training
    try:
        if training.data is None:
            raise DatasetError(training.dataset_error or "MNIST is not available")
        with store.session_scope() as session:
            record_environment(session, run_id, training.environment)
        from worker.training.model import EpochMetrics, train

        def on_epoch(metrics: EpochMetrics) -> None:
            with store.session_scope() as session:
                record_epoch(
                    session,
                    run_id,
                    metrics.epoch,
                    metrics.loss,
                    metrics.accuracy,
                    metrics.seconds,
                    metrics.val_loss,
                    metrics.val_accuracy,
                )
            logger.info("run %s epoch %d: loss %.4f", run_id, metrics.epoch, metrics.loss)

        with RunHeartbeat(store, run_id, context.settings.heartbeat_interval) as beat:
            beat.beat()  # a cancel that came before training started
            result = train(params, training.data, on_epoch, beat.cancelled.is_set)
    except Exception as exc:
        logger.exception("run %s failed", run_id)
        with store.session_scope() as session:
            finish_run(session, run_id, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        return Outcome.FAILED
    with store.session_scope() as session:
        if result.cancelled:
            finish_run(session, run_id, RunStatus.CANCELLED, error=None)
            return Outcome.CANCELLED
        finish_run(
            session,
            run_id,
            RunStatus.SUCCEEDED,
            test_loss=result.test_loss,
            test_accuracy=result.test_accuracy,
            evaluation=result.evaluation,
        )
    logger.info("run %s succeeded: test accuracy %.4f", run_id, result.test_accuracy)
    return Outcome.SUCCEEDED
