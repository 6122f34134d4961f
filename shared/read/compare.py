"""Side-by-side comparison of runs: which hyperparameters differ, final figures, deltas, curves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from shared.domain.errors import BadRequest, NotFound
from shared.domain.params import PARAM_NAMES
from shared.read.formatting import epoch_to_dict, run_to_dict
from shared.store.models import Epoch
from shared.store.queries import epochs_by_run, per_class_accuracies, runs_by_id


@dataclass(frozen=True)
class Comparison:
    """What the compare page and GET /api/compare show."""

    runs: list[dict[str, Any]]
    differing: list[str]
    baseline_id: int
    series: dict[int, list[dict[str, Any]]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ids": [run["id"] for run in self.runs],
            "baseline": self.baseline_id,
            "differing_params": self.differing,
            "runs": self.runs,
            "epochs": {str(run_id): rows for run_id, rows in self.series.items()},
        }


def best_epoch(rows: list[Epoch]) -> int | None:
    """The epoch with the highest validation accuracy (training accuracy without validation)."""
    if not rows:
        return None
    key = "val_accuracy" if any(r.val_accuracy is not None for r in rows) else "accuracy"
    return max(rows, key=lambda r: (getattr(r, key) or 0.0, -r.epoch)).epoch


def compare_runs(session: Session, ids: list[int], baseline_id: int | None = None) -> Comparison:
    """Load the runs, their epochs and per-class accuracies in three queries; line them up."""
    runs = runs_by_id(session, ids)
    missing = [i for i in ids if i not in runs]
    if missing:
        raise NotFound(
            f"no run {', '.join(map(str, missing))}", {"ids": f"unknown run ids: {missing}"}
        )
    baseline_id = baseline_id if baseline_id is not None else ids[0]
    if baseline_id not in runs:
        raise BadRequest(
            "the baseline must be one of the compared runs", {"baseline": "not in ids"}
        )
    series = epochs_by_run(session, ids)
    per_class = per_class_accuracies(session, ids)
    differing = [
        name for name in PARAM_NAMES if len({repr(getattr(runs[i], name)) for i in ids}) > 1
    ]
    base = runs[baseline_id]
    summaries = []
    for i in ids:
        run = runs[i]
        summary = run_to_dict(run, series[i][-1] if series[i] else None)
        summary["best_epoch"] = best_epoch(series[i])
        summary["training_seconds"] = (
            round(sum(r.seconds for r in series[i]), 3) if series[i] else None
        )
        summary["delta"] = {
            "test_accuracy": _delta(run.test_accuracy, base.test_accuracy),
            "test_loss": _delta(run.test_loss, base.test_loss),
        }
        summary["per_class_accuracy"] = per_class.get(i)
        summaries.append(summary)
    return Comparison(
        runs=summaries,
        differing=differing,
        baseline_id=baseline_id,
        series={i: [epoch_to_dict(r) for r in series[i]] for i in ids},
    )


def _delta(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None:
        return None
    return round(value - baseline, 6)
