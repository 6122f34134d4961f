"""One serializer per resource: plain dicts for the API, the CLI and the pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.domain.status import RunStatus
from shared.store.models import Epoch, Evaluation, Run, Worker, utcnow


def iso(value: datetime | None) -> str | None:
    """Format a timestamp as ISO 8601 in UTC."""
    return value.isoformat().replace("+00:00", "Z") if value else None


def duration_seconds(run: Run) -> float | None:
    """Seconds from start to finish; None until the run has finished."""
    if run.started_at is None or run.finished_at is None:
        return None
    return round((run.finished_at - run.started_at).total_seconds(), 3)


@dataclass(frozen=True)
class Progress:
    """What the dashboard shows of a run in flight."""

    epochs_done: int
    epochs_total: int
    latest: Epoch | None
    seconds_left: float | None


def progress(run: Run, latest: Epoch | None, now: datetime | None = None) -> Progress:
    """Estimate the time left from the mean epoch time so far."""
    seconds_left = None
    if run.status == RunStatus.RUNNING and run.started_at and run.epochs_done:
        elapsed = ((now or utcnow()) - run.started_at).total_seconds()
        per_epoch = elapsed / run.epochs_done
        seconds_left = max(0.0, per_epoch * (run.epochs - run.epochs_done))
    return Progress(run.epochs_done, run.epochs, latest, seconds_left)


def epoch_to_dict(epoch: Epoch) -> dict[str, Any]:
    """Serialize one epoch's metrics."""
    return {
        "epoch": epoch.epoch,
        "loss": epoch.loss,
        "accuracy": epoch.accuracy,
        "val_loss": epoch.val_loss,
        "val_accuracy": epoch.val_accuracy,
        "seconds": epoch.seconds,
        "recorded_at": iso(epoch.recorded_at),
        "attempt": epoch.attempt,
    }


def run_to_dict(
    run: Run, latest: Epoch | None = None, queue_position: int | None = None
) -> dict[str, Any]:
    """Serialize a run's summary, with its progress when `latest` is given."""
    state = progress(run, latest)
    return {
        "id": run.id,
        "name": run.name,
        "status": run.status.value,
        "params": run.params,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "duration_seconds": duration_seconds(run),
        "worker": run.worker,
        "task_id": run.task_id,
        "attempt": run.attempt,
        "heartbeat_at": iso(run.heartbeat_at),
        "cancel_requested": run.cancel_requested,
        "epochs_done": run.epochs_done,
        "epochs_total": run.epochs,
        "latest_loss": latest.loss if latest else None,
        "latest_accuracy": latest.accuracy if latest else None,
        "seconds_left": round(state.seconds_left, 1) if state.seconds_left is not None else None,
        "queue_position": queue_position,
        "test_loss": run.test_loss,
        "test_accuracy": run.test_accuracy,
        "error": run.error,
        "lost_attempts": run.lost_attempts or [],
        "study_id": run.study_id,
        "config": run.config,
        "reproducibility": {
            "seed": run.seed,
            "tensorflow": run.tensorflow_version,
            "keras": run.keras_version,
            "python": run.python_version,
            "dataset_sha256": run.dataset_sha256,
        },
    }


def evaluation_to_dict(evaluation: Evaluation | None) -> dict[str, Any] | None:
    """Serialize a finished run's confusion matrix, per-class accuracy and sample errors."""
    if evaluation is None:
        return None
    return {
        "confusion_matrix": evaluation.confusion_matrix,
        "per_class_accuracy": evaluation.per_class_accuracy,
        "misclassified": evaluation.misclassified,
    }


def worker_to_dict(worker: Worker, alive: bool, running: list[int]) -> dict[str, Any]:
    """Serialize a registered worker with whether it is alive and which runs it holds."""
    return {
        "name": worker.name,
        "hostname": worker.hostname,
        "pid": worker.pid,
        "concurrency": worker.concurrency,
        "started_at": iso(worker.started_at),
        "heartbeat_at": iso(worker.heartbeat_at),
        "stopped_at": iso(worker.stopped_at),
        "alive": alive,
        "running": running,
    }
