"""Builders for test data: runs and epochs written through the same functions production uses."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from shared.models import Run, RunStatus
from shared.params import Hyperparams
from shared.runs import claim_run, create_run, finish_run, record_epoch

# A small, valid evaluation: every test digit right, one sample "misclassified" digit.
EVALUATION = {
    "confusion_matrix": [[10 if i == j else 0 for j in range(10)] for i in range(10)],
    "per_class_accuracy": [1.0] * 10,
    "misclassified": [{"index": 8, "label": 5, "predicted": 6, "image": "AAAA"}],
}


def make_run(
    session: Session,
    name: str | None = None,
    status: RunStatus = RunStatus.QUEUED,
    epochs_done: int = 0,
    test_accuracy: float | None = None,
    test_loss: float | None = None,
    worker: str = "builder@test",
    **params: Any,
) -> Run:
    """Create a run with these parameters, taken as far as `status` with `epochs_done` epochs."""
    params.setdefault("seed", 1)
    run = create_run(session, Hyperparams(**params), name)
    if status != RunStatus.QUEUED:
        assert claim_run(session, run.id, worker, stale_after=60)
    for epoch in range(1, epochs_done + 1):
        record_epoch(
            session, run.id, epoch, loss=1.0 / epoch, accuracy=1 - 0.5 / epoch, seconds=1.5
        )
    if status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
        finish_run(
            session,
            run.id,
            status,
            test_loss=test_loss,
            test_accuracy=test_accuracy,
            error="boom" if status == RunStatus.FAILED else None,
        )
    session.commit()
    session.refresh(run)
    return run
