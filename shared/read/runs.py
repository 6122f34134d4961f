"""What the run views show: one serializer per resource, each returning the API's response model.

The dashboard and the JSON API both call these, so a list row, a run and the queue look the same
wherever they are shown.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from shared.domain import cursor
from shared.domain.errors import Conflict
from shared.domain.filters import RunQueryBase
from shared.read.formatting import duration_seconds, seconds_left
from shared.read.models import (
    EpochOut,
    EvaluationOut,
    MetricsOut,
    QueuedRun,
    QueueOut,
    Reproducibility,
    RunDetail,
    RunList,
    RunOut,
)
from shared.store import queries
from shared.store.models import Epoch, Evaluation, Run


def epoch_out(epoch: Epoch) -> EpochOut:
    """One epoch's metrics."""
    return EpochOut(
        epoch=epoch.epoch,
        loss=epoch.loss,
        accuracy=epoch.accuracy,
        val_loss=epoch.val_loss,
        val_accuracy=epoch.val_accuracy,
        seconds=epoch.seconds,
        recorded_at=epoch.recorded_at,
        attempt=epoch.attempt,
    )


def run_out(run: Run, latest: Epoch | None = None, queue_position: int | None = None) -> RunOut:
    """A run's summary, with its progress when `latest` (its last epoch) is given."""
    return RunOut(
        id=run.id,
        name=run.name,
        tags=run.tags or [],
        note=run.note,
        archived=run.archived,
        status=run.status,
        params=run.params,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        duration_seconds=duration_seconds(run),
        worker=run.worker,
        task_id=run.task_id,
        attempt=run.attempt,
        heartbeat_at=run.heartbeat_at,
        cancel_requested=run.cancel_requested,
        epochs_done=run.epochs_done,
        epochs_total=run.epochs,
        latest_loss=latest.loss if latest else None,
        latest_accuracy=latest.accuracy if latest else None,
        seconds_left=seconds_left(run),
        queue_position=queue_position,
        test_loss=run.test_loss,
        test_accuracy=run.test_accuracy,
        error=run.error,
        lost_attempts=run.lost_attempts or [],
        study_id=run.study_id,
        config=run.config,
        reproducibility=Reproducibility(
            seed=run.seed,
            tensorflow=run.tensorflow_version,
            keras=run.keras_version,
            python=run.python_version,
            dataset_sha256=run.dataset_sha256,
        ),
    )


def run_outs(session: Session, runs: list[Run]) -> list[RunOut]:
    """Summaries of some runs with their progress and queue places, in three queries in all."""
    latest = queries.latest_epochs(session, [run.id for run in runs])
    positions = queries.queue_positions(session, runs)
    return [run_out(run, latest.get(run.id), positions.get(run.id)) for run in runs]


def evaluation_out(evaluation: Evaluation | None) -> EvaluationOut | None:
    """A finished run's confusion matrix, per-class accuracy and sample errors."""
    if evaluation is None:
        return None
    return EvaluationOut(
        confusion_matrix=evaluation.confusion_matrix,
        per_class_accuracy=evaluation.per_class_accuracy,
        misclassified=evaluation.misclassified,
    )


def runs_page(session: Session, query: RunQueryBase, secret: str) -> RunList:
    """One page of the run list: its rows, how many runs match in all, and the signed cursor of
    the next page (`secret` signs it); 400 for a cursor that was not made here for this sort."""
    after = cursor.decode(secret, query.cursor, query.sort) if query.cursor else None
    page = queries.list_runs(session, query, after)
    return RunList(
        runs=run_outs(session, page.runs),
        total=page.total.value,
        total_relation=page.total.relation,
        page=page.page,
        limit=page.limit,
        pages=page.pages,
        next_cursor=cursor.encode(secret, page.next) if page.next else None,
    )


def run_detail(session: Session, run_id: int) -> RunDetail:
    """Everything known about one run, its evaluation included; 404 for no such run."""
    run = queries.get_run(session, run_id)
    has_model = queries.has_trained_model(session, run_id)
    return RunDetail(
        **dict(run_outs(session, [run])[0]),
        evaluation=evaluation_out(run.evaluation),
        model_url=f"/api/runs/{run_id}/model" if has_model else None,
    )


def run_epochs(session: Session, run_id: int) -> MetricsOut:
    """A run's per-epoch metrics, in order; 404 for no such run."""
    queries.get_run(session, run_id)
    epochs = [epoch_out(epoch) for epoch in queries.epochs_of(session, run_id)]
    return MetricsOut(run_id=run_id, epochs=epochs)


def queue(session: Session) -> QueueOut:
    """Queued runs, next to run first, each with its place."""
    runs = run_outs(session, queries.queued_runs(session))
    # `position` is the API's name for a queued run's place; the runs list calls it queue_position.
    queued = [QueuedRun(**dict(run), position=run.queue_position) for run in runs]
    return QueueOut(runs=queued, total=len(queued))


def trained_model(session: Session, run_id: int) -> bytes:
    """A succeeded run's `.keras` file; 404 for no such run, 409 for one without a model."""
    run = queries.get_run(session, run_id)
    model = queries.trained_model(session, run_id)
    if model is None:
        raise Conflict(
            f"run {run_id} has no trained model: it is {run.status.value}",
            {"status": "a model is kept once its run succeeded"},
        )
    return model.keras_file
