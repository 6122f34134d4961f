"""What the training task does, as plain functions: claim the run, train, record, finish."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from shared import db
from shared.config import get_settings
from shared.errors import DatasetError, NotFound
from shared.models import FINISHED_STATUSES, RunStatus
from shared.params import Hyperparams
from shared.runs import (
    claim_run,
    finish_run,
    get_run,
    heartbeat,
    is_stale,
    record_environment,
    record_epoch,
)
from worker import process

logger = logging.getLogger(__name__)

SUCCEEDED, FAILED, CANCELLED, SKIPPED, HELD = "succeeded", "failed", "cancelled", "skipped", "held"
MAX_ATTEMPTS = 3


class RunHeartbeat:
    """A thread that refreshes a run's heartbeat and notices a cancel request while it trains."""

    def __init__(self, run_id: int, interval: float) -> None:
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
            with db.session_scope() as session:
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


def _claim(run_id: int, worker: str) -> tuple[str, Hyperparams | None]:
    settings = get_settings()
    with db.session_scope() as session:
        try:
            run = get_run(session, run_id)
        except NotFound:
            logger.warning("run %s does not exist; dropping its message", run_id)
            return SKIPPED, None
        if run.status in FINISHED_STATUSES:
            return SKIPPED, None
        lost = run.status == RunStatus.RUNNING and is_stale(run, settings.heartbeat_timeout)
        if lost and run.attempt >= MAX_ATTEMPTS:
            finish_run(
                session,
                run_id,
                RunStatus.FAILED,
                error=f"gave up after {run.attempt} attempts: the worker was lost each time",
            )
            return FAILED, None
        if run.cancel_requested:
            if lost:  # cancelled while its worker was lost: nobody else will finish it
                finish_run(session, run_id, RunStatus.CANCELLED)
                return CANCELLED, None
            return HELD, None
        if not claim_run(session, run_id, worker, settings.heartbeat_timeout):
            session.refresh(run)
            return (HELD if run.status == RunStatus.RUNNING else SKIPPED), None
        return "claimed", Hyperparams.model_validate(run.params)


def execute_run(run_id: int, worker: str) -> str:
    """Train one run to the end and record every step; return how it ended.

    Safe to call again for the same run (a redelivered message): a finished run is skipped, a
    run a live worker holds is left alone (HELD), and epochs are upserted.
    """
    outcome, params = _claim(run_id, worker)
    if params is None:
        return outcome
    logger.info("run %s claimed by %s: %s", run_id, worker, params.model_dump())
    settings = get_settings()
    try:
        state = process.load_runtime()
        if state["data"] is None:
            raise DatasetError(state["environment"]["dataset_error"])
        with db.session_scope() as session:
            record_environment(
                session,
                run_id,
                {k: v for k, v in state["environment"].items() if k != "dataset_error"},
            )
        from worker.training.model import EpochMetrics, train

        def on_epoch(metrics: EpochMetrics) -> None:
            with db.session_scope() as session:
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

        with RunHeartbeat(run_id, settings.heartbeat_interval) as beat:
            beat.beat()  # a cancel that came before training started
            result = train(params, state["data"], on_epoch, beat.cancelled.is_set)
    except Exception as exc:
        logger.exception("run %s failed", run_id)
        with db.session_scope() as session:
            finish_run(session, run_id, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        return FAILED
    with db.session_scope() as session:
        if result.cancelled:
            finish_run(session, run_id, RunStatus.CANCELLED, error=None)
            return CANCELLED
        finish_run(
            session,
            run_id,
            RunStatus.SUCCEEDED,
            test_loss=result.test_loss,
            test_accuracy=result.test_accuracy,
            evaluation=result.evaluation,
        )
    logger.info("run %s succeeded: test accuracy %.4f", run_id, result.test_accuracy)
    return SUCCEEDED
