"""The whole path on real parts: API -> Celery on Redis -> a worker process training TensorFlow -> store.

A job on each broker is test_brokers.py's; cancelling a queued run, test_cancel.py's."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.domain.status import RunStatus
from shared.ops.celery_config import TASK_NAME
from shared.store.models import Epoch
from tests.support.app import client_for, submit_run
from tests.support.machine import mnist_dir
from tests.support.processes import worker_process
from tests.support.runs import read_run
from tests.support.waiting import until_finished, wait_for
from web.queue import make_producer


def test_epochs_arrive_while_running_then_the_run_succeeds(
    settings: Settings, worker: Settings, client: FlaskClient, session: Session
) -> None:
    run_id = submit_run(client, train_samples=3000, epochs=4, seed=5)
    # Each observation is (status, epoch rows) read together.
    observations: list[tuple[RunStatus, int]] = []

    def seen_epoch_while_running() -> bool:
        run = read_run(session, run_id)
        rows = session.scalar(select(func.count()).select_from(Epoch).where(Epoch.run_id == run_id))
        observations.append((run.status, rows or 0))
        assert not run.status.finished or any(
            s == RunStatus.RUNNING and n for s, n in observations
        ), f"run finished before an epoch was seen while running: {observations}"
        return run.status == RunStatus.RUNNING and bool(rows)

    wait_for(
        seen_epoch_while_running, 120, interval=0.05, what="an epoch row while the run is running"
    )
    [run] = until_finished(session, run_id)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.test_accuracy is not None and run.test_accuracy > 0.8  # chance is 0.1
    assert run.test_loss is not None and run.test_loss > 0
    assert [e.epoch for e in run.epoch_rows] == [1, 2, 3, 4]
    assert run.epochs_done == 4 and run.attempt == 1
    assert run.worker and run.worker.startswith("session-worker@")
    assert (
        run.started_at and run.finished_at and run.created_at <= run.started_at <= run.finished_at
    )
    assert run.tensorflow_version and run.keras_version and run.python_version
    assert run.dataset_sha256 and len(run.dataset_sha256) == 64
    assert run.evaluation is not None and sum(map(sum, run.evaluation.confusion_matrix)) == 10000

    api = client.get(f"/api/runs/{run_id}/metrics").get_json()
    assert [(e["epoch"], e["attempt"]) for e in api["epochs"]] == [(1, 1), (2, 1), (3, 1), (4, 1)]


def test_the_trained_model_downloads_opens_in_keras_and_scores_the_recorded_accuracy(
    settings: Settings, worker: Settings, client: FlaskClient, session: Session, tmp_path: Path
) -> None:
    run_id = submit_run(client, train_samples=2000, epochs=2, seed=8, normalize=False)
    [run] = until_finished(session, run_id)
    assert run.status == RunStatus.SUCCEEDED, run.error
    detail = client.get(f"/api/runs/{run_id}").get_json()
    response = client.get(detail["model_url"])
    assert response.status_code == 200
    assert "attachment" in response.headers["Content-Disposition"]
    path = tmp_path / "run.keras"
    path.write_bytes(response.data)

    import keras

    from worker.training.data import load_mnist

    model = keras.models.load_model(path)
    test = load_mnist(mnist_dir())
    # The model takes raw pixels: its run's scaling (none here) is built in.
    predicted = model.predict(test.test_images.astype("float32"), verbose=0).argmax(axis=1)
    assert (predicted == test.test_labels).mean() == pytest.approx(run.test_accuracy, abs=1e-4)
    loss, accuracy = model.evaluate(test.test_images.astype("float32"), test.test_labels, verbose=0)
    assert accuracy == pytest.approx(run.test_accuracy, abs=1e-4)
    assert loss == pytest.approx(run.test_loss, rel=1e-3)
    assert client.get(f"/api/runs/{submit_run(client, epochs=1)}/model").status_code == 409
    assert client.get("/api/runs/999999/model").status_code == 404


def test_a_redelivered_message_never_trains_a_run_twice(
    settings: Settings, worker: Settings, client: FlaskClient, session: Session
) -> None:
    run_id = submit_run(client, train_samples=1000, epochs=2, seed=1)
    # The same message again, as a broker would redeliver it.
    make_producer(settings).send_task(TASK_NAME, args=[run_id])
    [run] = until_finished(session, run_id)
    assert run.status == RunStatus.SUCCEEDED
    follow_up = submit_run(
        client, train_samples=500, epochs=1, seed=1
    )  # queued behind the duplicate
    until_finished(session, follow_up)
    run = read_run(session, run_id)
    assert run.attempt == 1
    assert [e.epoch for e in run.epoch_rows] == [1, 2]


def test_a_message_for_a_missing_run_is_dropped(
    settings: Settings, worker: Settings, client: FlaskClient, session: Session
) -> None:
    make_producer(settings).send_task(TASK_NAME, args=[987654])
    run_id = submit_run(client, train_samples=500, epochs=1, seed=1)
    [run] = until_finished(session, run_id)
    assert run.status == RunStatus.SUCCEEDED


def test_a_worker_without_mnist_fails_the_run_with_the_reason(
    settings: Settings, session: Session, tmp_path: Path
) -> None:
    """A failing worker never leaves a run stuck: it ends failed, naming what to fix."""
    lonely = settings.with_overrides(queue=f"{settings.queue}-nodata", data_dir=tmp_path)
    client = client_for(lonely)
    with worker_process(lonely, name="nodata-worker"):
        run_id = submit_run(client, train_samples=500, epochs=1)
        [run] = until_finished(session, run_id, timeout=60)
    assert run.status == RunStatus.FAILED
    assert "TRAINYARD_DATA_DIR" in (run.error or "")
    assert run.finished_at is not None
