"""A run's status: where it is in its life, and which statuses end it."""

from __future__ import annotations

import enum


# Where a run is: waiting in the queue, held by a worker, or ended one of four ways (`pruned`: a
# search stopped the trial early on its validation metric; its epochs are kept). (No
# docstring: it would become the enum's description in the OpenAPI document.)
class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PRUNED = "pruned"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATUSES


FINISHED_STATUSES = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.PRUNED}
)
