"""Builders for test data: runs and epochs written through the same functions production uses."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from shared.domain.lease import EpochRecord, Lease
from shared.domain.params import Hyperparams
from shared.domain.status import RunStatus
from shared.store.lease import claim, finish, record_epoch
from shared.store.models import Run
from shared.store.runs import create_run

# A small, valid evaluation: every test digit right, one sample "misclassified" digit.
EVALUATION = {
    "confusion_matrix": [[10 if i == j else 0 for j in range(10)] for i in range(10)],
    "per_class_accuracy": [1.0] * 10,
    "misclassified": [{"index": 8, "label": 5, "predicted": 6, "image": "AAAA"}],
}


def lease_of(run: Run) -> Lease:
    """The lease of the attempt that holds `run` now (as its worker would have it)."""
    return Lease(run.id, run.attempt, run.worker or "builder@test", 60.0)


def epoch_record(epoch: int) -> EpochRecord:
    """Plausible figures for one epoch: loss falls, accuracy rises."""
    return EpochRecord(epoch, loss=1.0 / epoch, accuracy=1 - 0.5 / epoch, seconds=1.5)


def make_run(
    session: Session,
    name: str | None = None,
    status: RunStatus = RunStatus.QUEUED,
    epochs_done: int = 0,
    test_accuracy: float | None = None,
    test_loss: float | None = None,
    worker: str = "builder@test",
    evaluation: dict[str, Any] | None = None,
    keras_file: bytes | None = None,
    **params: Any,
) -> Run:
    """Create a run with these parameters, taken as far as `status` with `epochs_done` epochs,
    through the same claim, fenced writes and finish a worker uses."""
    params.setdefault("seed", 1)
    run = create_run(session, Hyperparams(**params), name)
    if status != RunStatus.QUEUED:
        lease = claim(session, run.id, worker, pid=0, seconds=60)
        assert lease is not None
        for epoch in range(1, epochs_done + 1):
            record_epoch(session, lease, epoch_record(epoch))
        if status.finished:
            finish(
                session,
                lease,
                status,
                test_loss=test_loss,
                test_accuracy=test_accuracy,
                error="boom" if status == RunStatus.FAILED else None,
                evaluation=evaluation,
                keras_file=keras_file,
            )
    session.commit()
    session.refresh(run)
    return run
