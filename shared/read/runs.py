"""What each page and API answer shows of runs: reads joined with serializers, one function a view.

The dashboard and the JSON API both call these, so a list row, a run and the queue look the same
wherever they are shown.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from shared.domain.errors import Conflict
from shared.domain.filters import RunQueryBase
from shared.read.formatting import epoch_to_dict, evaluation_to_dict, run_to_dict, worker_to_dict
from shared.store.models import Run
from shared.store.queries import (
    Page,
    epochs_of,
    get_run,
    has_trained_model,
    latest_epochs,
    list_runs,
    queue_positions,
    queued_runs,
)
from shared.store.queries import trained_model as trained_model_row
from shared.store.workers import list_workers


def run_rows(session: Session, runs: list[Run]) -> list[dict[str, Any]]:
    """Summaries of some runs with their progress and queue places, in three queries in all."""
    latest = latest_epochs(session, [run.id for run in runs])
    positions = queue_positions(session, runs)
    return [run_to_dict(run, latest.get(run.id), positions.get(run.id)) for run in runs]


def runs_page(session: Session, query: RunQueryBase) -> tuple[Page, list[dict[str, Any]]]:
    """One page of the run list, and its rows."""
    page = list_runs(session, query)
    return page, run_rows(session, page.runs)


def run_detail(session: Session, run_id: int) -> dict[str, Any]:
    """Everything known about one run, its evaluation included."""
    run = get_run(session, run_id)
    detail = run_rows(session, [run])[0]
    detail["evaluation"] = evaluation_to_dict(run.evaluation)
    has_model = has_trained_model(session, run_id)
    detail["model_url"] = f"/api/runs/{run_id}/model" if has_model else None
    return detail


def trained_model(session: Session, run_id: int) -> bytes:
    """A succeeded run's `.keras` file; 404 for no such run, 409 for one without a model."""
    run = get_run(session, run_id)
    model = trained_model_row(session, run_id)
    if model is None:
        raise Conflict(
            f"run {run_id} has no trained model: it is {run.status.value}",
            {"status": "a model is kept once its run succeeded"},
        )
    return model.keras_file


def run_epochs(session: Session, run_id: int) -> list[dict[str, Any]]:
    """A run's per-epoch metrics, in order; 404 for no such run."""
    get_run(session, run_id)
    return [epoch_to_dict(epoch) for epoch in epochs_of(session, run_id)]


def queue(session: Session) -> list[dict[str, Any]]:
    """Queued runs, next to run first, each with its place."""
    return run_rows(session, queued_runs(session))


def workers(session: Session, alive_within: float, include_dead: bool) -> list[dict[str, Any]]:
    """Registered workers, whether each is alive, and the runs it holds."""
    return [worker_to_dict(*row) for row in list_workers(session, alive_within, include_dead)]
