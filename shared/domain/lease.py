"""A run's lease as its holder sees it: which attempt holds the run, what the holder is asked to
do, what it reports each epoch, and the two ways its hold ends early."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Lease:
    """One attempt's hold on a run: renewed for `seconds` by each fenced write."""

    run_id: int
    attempt: int
    worker: str
    seconds: float


class LeaseLost(Exception):
    """A fenced write matched no row: another attempt holds the run now, or it ended."""

    def __init__(self, lease: Lease, reason: str = "") -> None:
        because = f" ({reason})" if reason else ""
        super().__init__(f"run {lease.run_id}: attempt {lease.attempt} no longer holds it{because}")
        self.lease = lease


class CancelRequested(Exception):
    """The attempt still holds the run, but a cancel was accepted: it must record nothing more."""

    def __init__(self, lease: Lease) -> None:
        super().__init__(f"run {lease.run_id}: cancel requested")
        self.lease = lease


@dataclasses.dataclass(frozen=True)
class Signals:
    """What the holder of a run is asked to do, read back with each renewal."""

    cancel: bool
    handover: bool


@dataclasses.dataclass(frozen=True)
class EpochRecord:
    """One finished epoch's figures, as training reports them and the store records them."""

    epoch: int  # from 1
    loss: float
    accuracy: float
    seconds: float
    val_loss: float | None = None
    val_accuracy: float | None = None
