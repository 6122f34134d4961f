"""A run's times as every view shows them: how long it took, and how long it has left."""

from __future__ import annotations

from datetime import datetime

from shared.domain.status import RunStatus
from shared.store.models import Run, utcnow


def duration_seconds(run: Run) -> float | None:
    """Seconds from start to finish; None until the run has finished."""
    if run.started_at is None or run.finished_at is None:
        return None
    return round((run.finished_at - run.started_at).total_seconds(), 3)


def seconds_left(run: Run, now: datetime | None = None) -> float | None:
    """A running run's time left, from its mean epoch time so far; None until an epoch is done."""
    if run.status != RunStatus.RUNNING or not run.started_at or not run.epochs_done:
        return None
    elapsed = ((now or utcnow()) - run.started_at).total_seconds()
    per_epoch = elapsed / run.epochs_done
    return round(max(0.0, per_epoch * (run.epochs - run.epochs_done)), 1)
