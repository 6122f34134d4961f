"""What a search study's view adds: the chosen best, the epochs spent, its trials, the
best-so-far curve against cumulative epochs, and which hyperparameters mattered."""

from __future__ import annotations

from collections import Counter
from typing import Literal, cast

from sqlalchemy.orm import Session

from shared.domain.search import best, importance
from shared.domain.status import RunStatus
from shared.read.models import BestTrial, SearchCurvePoint, SearchOut, TrialOut
from shared.store.models import Study
from shared.store.queries import epochs_by_run
from shared.store.search import spec_of, trials

SearchState = Literal["searching", "testing", "done", "cancelled"]


def search_view(session: Session, study: Study) -> SearchOut | None:
    """The search's figures, or None for a grid or sample study."""
    spec = spec_of(study)
    if spec is None:
        return None
    runs, records = trials(session, study)
    epochs = epochs_by_run(session, [run.id for run in runs])
    chosen = best(spec, records)
    best_out = None
    if chosen is not None:
        run = next(run for run in runs if run.config == chosen.number)
        tested = study.best_run_id == run.id
        best_out = BestTrial(
            run_id=run.id,
            trial=chosen.number,
            params=chosen.params,
            metric=spec.metric,
            value=chosen.last or 0.0,
            val_accuracy=epochs[run.id][-1].val_accuracy if epochs[run.id] else None,
            test_accuracy=run.test_accuracy if tested else None,
            final=tested,
        )
    trial_rows = [
        TrialOut(
            trial=record.number,
            run_id=run.id,
            params=record.params,
            status=run.status,
            epochs_done=len(record.reports),
            reports=[record.reports[e] for e in sorted(record.reports)],
            value=record.last,
        )
        for run, record in zip(runs, records, strict=True)
    ]
    # The curve to judge a search by: the best final metric of the trials complete so far,
    # against every epoch any trial trained (in the order they were recorded).
    last_epoch = {run.id: run.epochs for run in runs if run.status == RunStatus.SUCCEEDED}
    rows = sorted(
        (row for series in epochs.values() for row in series), key=lambda r: (r.recorded_at, r.id)
    )
    curve, so_far = [], None
    sign = 1.0 if spec.maximize else -1.0
    for spent, row in enumerate(rows, start=1):
        value = getattr(row, spec.metric)
        complete = last_epoch.get(row.run_id) == row.epoch and value is not None
        if complete and (so_far is None or sign * value > sign * so_far):
            so_far = value
        if so_far is not None:
            curve.append(SearchCurvePoint(epochs=spent, best=so_far))
    return SearchOut(
        spec=spec.model_dump(),
        state=cast(SearchState, study.search_state or "done"),
        best=best_out,
        epochs_trained=len(rows),
        trials=dict(Counter(run.status.value for run in runs)),
        trial_list=trial_rows,
        curve=curve,
        importance=importance(spec, records),
    )
