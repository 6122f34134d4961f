"""Runs side by side: which hyperparameters differ, final figures, deltas, curves."""

from __future__ import annotations

from sqlalchemy.orm import Session

from shared.domain.errors import BadRequest, NotFound
from shared.domain.params import PARAM_NAMES
from shared.read.models import CompareOut, CompareRun, Delta
from shared.read.runs import epoch_out, run_out
from shared.store.models import Epoch
from shared.store.queries import epochs_by_run, per_class_accuracies, runs_by_id


def best_epoch(rows: list[Epoch]) -> int | None:
    """The epoch with the highest validation accuracy (training accuracy without validation)."""
    if not rows:
        return None
    key = "val_accuracy" if any(r.val_accuracy is not None for r in rows) else "accuracy"
    return max(rows, key=lambda r: (getattr(r, key) or 0.0, -r.epoch)).epoch


def compare_runs(session: Session, ids: list[int], baseline_id: int | None = None) -> CompareOut:
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
    base = runs[baseline_id]
    compared = [
        CompareRun(
            **dict(run_out(runs[i], series[i][-1] if series[i] else None)),
            best_epoch=best_epoch(series[i]),
            training_seconds=round(sum(r.seconds for r in series[i]), 3) if series[i] else None,
            delta=Delta(
                test_accuracy=_delta(runs[i].test_accuracy, base.test_accuracy),
                test_loss=_delta(runs[i].test_loss, base.test_loss),
            ),
            per_class_accuracy=per_class.get(i),
        )
        for i in ids
    ]
    return CompareOut(
        ids=ids,
        baseline=baseline_id,
        differing_params=[
            name for name in PARAM_NAMES if len({repr(getattr(runs[i], name)) for i in ids}) > 1
        ],
        runs=compared,
        epochs={str(i): [epoch_out(row) for row in series[i]] for i in ids},
    )


def _delta(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None:
        return None
    return round(value - baseline, 6)
