"""The whole path on real parts: API -> Celery on Redis -> a worker process training TensorFlow -> store."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.domain.status import RunStatus
from shared.ops.celery_config import TASK_NAME
from shared.store.models import Epoch, Run
from shared.store.queries import get_run
from tests.support.machine import mnist_dir
from tests.support.processes import worker_process
from tests.support.waiting import wait_for
from web.queue import make_producer

FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


def submit(client: FlaskClient, **params: object) -> int:
    response = client.post("/api/runs", json={"name": "e2e", "params": params})
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def finished(session: Session, run_id: int, timeout: float = 180) -> Run:
    def done() -> Run | None:
        session.expire_all()
        run = get_run(session, run_id)
        return run if run.status in FINISHED else None

    return wait_for(done, timeout, interval=0.3, what=f"run {run_id} to finish")


def test_epochs_arrive_while_running_then_the_run_succeeds(
    settings: Settings, worker: Settings, client: FlaskClient, session: Session
) -> None:
    run_id = submit(client, train_samples=3000, epochs=4, seed=5)
    # Each observation is (status, epoch rows) read together.
    observations: list[tuple[RunStatus, int]] = []

    def seen_epoch_while_running() -> bool:
        session.expire_all()
        run = get_run(session, run_id)
        rows = session.scalar(select(func.count()).select_from(Epoch).where(Epoch.run_id == run_id))
        observations.append((run.status, rows or 0))
        assert run.status not in FINISHED or any(
            s == RunStatus.RUNNING and n for s, n in observations
        ), f"run finished before an epoch was seen while running: {observations}"
        return run.status == RunStatus.RUNNING and bool(rows)

    wait_for(
        seen_epoch_while_running, 120, interval=0.05, what="an epoch row while the run is running"
    )
    run = finished(session, run_id)
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
    run_id = submit(client, train_samples=2000, epochs=2, seed=8, normalize=False)
    run = finished(session, run_id)
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
    assert client.get(f"/api/runs/{submit(client, epochs=1)}/model").status_code == 409
    assert client.get("/api/runs/999999/model").status_code == 404


def test_a_redelivered_message_never_trains_a_run_twice(
    settings: Settings, worker: Settings, client: FlaskClient, session: Session
) -> None:
    run_id = submit(client, train_samples=1000, epochs=2, seed=1)
    # The same message again, as a broker would redeliver it.
    make_producer(settings).send_task(TASK_NAME, args=[run_id])
    run = finished(session, run_id)
    assert run.status == RunStatus.SUCCEEDED
    follow_up = submit(client, train_samples=500, epochs=1, seed=1)  # queued behind the duplicate
    finished(session, follow_up)
    session.expire_all()
    run = get_run(session, run_id)
    assert run.attempt == 1
    assert [e.epoch for e in run.epoch_rows] == [1, 2]


def test_a_message_for_a_missing_run_is_dropped(
    settings: Settings, worker: Settings, client: FlaskClient, session: Session
) -> None:
    make_producer(settings).send_task(TASK_NAME, args=[987654])
    run_id = submit(client, train_samples=500, epochs=1, seed=1)
    assert finished(session, run_id).status == RunStatus.SUCCEEDED


def test_a_worker_without_mnist_fails_the_run_with_the_reason(
    settings: Settings, session: Session, tmp_path: Path
) -> None:
    """A failing worker never leaves a run stuck: it ends failed, naming what to fix."""
    lonely = settings.with_overrides(queue=f"{settings.queue}-nodata", data_dir=tmp_path)
    client = _client_for(lonely)
    with worker_process(lonely, name="nodata-worker"):
        run_id = submit(client, train_samples=500, epochs=1)
        run = finished(session, run_id, timeout=60)
    assert run.status == RunStatus.FAILED
    assert "TRAINYARD_DATA_DIR" in (run.error or "")
    assert run.finished_at is not None


def test_the_embedded_sqlite_broker_runs_the_same_path(
    settings: Settings, session: Session, tmp_path: Path
) -> None:
    embedded = settings.with_overrides(broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}")
    client = _client_for(embedded)
    with worker_process(embedded, name="embedded-worker"):
        run_id = submit(client, train_samples=1000, epochs=2, seed=4)
        run = finished(session, run_id)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.worker and run.worker.startswith("embedded-worker@")
    assert [e.epoch for e in run.epoch_rows] == [1, 2]
    assert run.test_accuracy is not None and run.test_accuracy > 0.6


def test_a_cancelled_queued_run_never_starts(
    settings: Settings, client: FlaskClient, session: Session
) -> None:
    """Queued with no worker listening: cancel it, then start a worker: it must not train it."""
    idle = settings.with_overrides(queue=f"{settings.queue}-cancel")
    client = _client_for(idle)
    run_id = submit(client, train_samples=500, epochs=1)
    assert client.post(f"/api/runs/{run_id}/cancel", json={}).status_code == 202
    backlog = redis.Redis.from_url(settings.broker_url).llen(idle.queue)
    assert backlog == 1
    with worker_process(idle, name="cancel-worker"):
        wait_for(
            lambda: redis.Redis.from_url(settings.broker_url).llen(idle.queue) == 0,
            60,
            what="the queue to drain",
        )
        after = submit(client, train_samples=500, epochs=1)
        finished(session, after)
    session.expire_all()
    run = get_run(session, run_id)
    assert run.status == RunStatus.CANCELLED and run.started_at is None and run.epoch_rows == []


def _client_for(settings: Settings) -> FlaskClient:
    from tests.support.app import create_test_app

    return create_test_app(settings).test_client()
