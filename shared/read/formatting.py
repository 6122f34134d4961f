"""A run's times as every view shows them: how long it took, and how long it has left."""

from __future__ import annotations

from shared.domain.status import RunStatus
from shared.store.models import Run


def duration_seconds(run: Run) -> float | None:
    """Seconds from start to finish; None until the run has finished."""
    if run.started_at is None or run.finished_at is None:
        return None
    return round((run.finished_at - run.started_at).total_seconds(), 3)


def seconds_left(run: Run) -> float | None:
    """A running run's time left, from its mean epoch time so far; None until an epoch is done.

    Both ends of the elapsed time are the database's (its start and its last heartbeat), never
    the reader's clock against a time another host wrote.
    """
    if run.status != RunStatus.RUNNING or not run.started_at or not run.epochs_done:
        return None
    if run.heartbeat_at is None:
        return None
    elapsed = max(0.0, (run.heartbeat_at - run.started_at).total_seconds())
    per_epoch = elapsed / run.epochs_done
    return round(max(0.0, per_epoch * (run.epochs - run.epochs_done)), 1)
