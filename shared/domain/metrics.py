"""What the cluster counts: the names of the kept totals, their labels, and the histograms'
buckets. Pure: the store keeps the numbers (`shared.store.metrics`), the web exposes them."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

# Counters kept in the store, so every web process reads the same numbers.
RUNS_SUBMITTED = "runs_submitted_total"
RUNS_FINISHED = "runs_finished_total"  # label: the status it ended with
RUNS_DELETED = "runs_deleted_total"  # label: the status it had when deleted (always finished)
LEASE_TAKEOVERS = "lease_takeovers_total"  # label: why (TAKEOVER_REASONS)
HANDOVERS = "handovers_total"  # runs a stopping worker put back in the queue (not lost)

# Why a sweep took a run back from its holder: a bounded label, not the message with its pid.
POOL_PROCESS_DIED = "pool_process_died"
LEASE_EXPIRED = "lease_expired"
TAKEOVER_REASONS = (POOL_PROCESS_DIED, LEASE_EXPIRED)

INF = float("inf")


@dataclass(frozen=True)
class HistogramSpec:
    """A histogram kept in the store: its name and the upper bounds of its buckets (seconds)."""

    name: str
    bounds: tuple[float, ...]

    def bucket(self, value: float) -> str:
        """The label of the one bucket `value` falls in (the store keeps non-cumulative counts)."""
        index = bisect.bisect_left(self.bounds, value)
        return bucket_label(self.bounds[index] if index < len(self.bounds) else INF)

    @property
    def sum_name(self) -> str:
        return f"{self.name}_sum"


def bucket_label(bound: float) -> str:
    """How Prometheus writes a bucket's upper bound: `0.5`, `10.0`, `+Inf`."""
    return "+Inf" if bound == INF else repr(float(bound))


# One epoch on a slice of MNIST takes a fraction of a second; a full 60,000 images on a busy CPU
# a minute or more.
EPOCH_DURATION = HistogramSpec(
    "epoch_duration_seconds", (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
)
# A run's life on workers, from its first claim to its end.
RUN_DURATION = HistogramSpec(
    "run_duration_seconds", (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
)
# How long a run waited in the queue before a worker claimed it (each claim, resumes too).
QUEUE_WAIT = HistogramSpec(
    "queue_wait_seconds", (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 14400)
)
HISTOGRAMS = (EPOCH_DURATION, RUN_DURATION, QUEUE_WAIT)
