"""The same path on each broker trainyard supports: Redis, RabbitMQ (a durable quorum queue,
publisher confirms) and the embedded SQLite broker; a submit's time to a running worker on each."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Connection
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.domain.status import RunStatus
from shared.ops.celery_config import celery_config
from tests.support.app import client_for, submit_run
from tests.support.machine import BROKERS, RABBIT_URL, broker_url
from tests.support.processes import worker_process
from tests.support.runs import read_run
from tests.support.waiting import until_finished, wait_for


@pytest.fixture(params=BROKERS)
def on_broker(
    request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
) -> Iterator[Settings]:
    yield settings.with_overrides(
        broker_url=broker_url(request.param, tmp_path),
        queue=f"trainyard-{request.param}-{uuid.uuid4().hex[:8]}",
    )


def test_a_run_goes_from_submit_to_succeeded_on_each_broker(
    on_broker: Settings, session: Session
) -> None:
    client = client_for(on_broker)
    with worker_process(on_broker, name="broker-worker"):
        latencies = []
        for seed in (1, 2, 3):
            began = time.monotonic()
            run_id = submit_run(client, train_samples=1000, epochs=2, seed=seed)
            wait_for(
                lambda run_id=run_id: read_run(session, run_id).status != RunStatus.QUEUED,
                60,
                interval=0.02,
                what="the claim",
            )
            latencies.append(time.monotonic() - began)
            [run] = until_finished(session, run_id, timeout=120)
            assert run.status == RunStatus.SUCCEEDED, run.error
            assert run.worker and run.worker.startswith("broker-worker@")
            assert [e.epoch for e in run.epoch_rows] == [1, 2]
            assert run.test_accuracy is not None and run.test_accuracy > 0.6  # chance is 0.1
    kind = on_broker.broker_url.split(":", 1)[0]
    print(f"\n{kind}: submit -> running in {', '.join(f'{s:.2f}' for s in latencies)} s")
    assert min(latencies) < 3.0


def test_rabbitmq_queues_are_durable_quorum_queues_with_publisher_confirms(
    settings: Settings,
) -> None:
    rabbit = settings.with_overrides(
        broker_url=RABBIT_URL, queue=f"trainyard-q-{uuid.uuid4().hex[:8]}"
    )
    config = celery_config(rabbit)
    assert config["broker_transport_options"]["confirm_publish"] is True
    client = client_for(rabbit)
    assert client.post("/api/runs", json={}).status_code == 202
    with Connection(RABBIT_URL) as connection:
        channel = connection.channel()
        # Declaring it again as a classic queue fails: RabbitMQ keeps the type it was made with.
        with pytest.raises(Exception, match="x-queue-type"):
            channel.queue_declare(
                rabbit.queue, durable=True, auto_delete=False, arguments={"x-queue-type": "classic"}
            )
        channel = connection.channel()
        declared = channel.queue_declare(rabbit.queue, passive=True)
        assert declared.message_count == 1
        channel.queue_delete(rabbit.queue)
    assert client.get("/api/health").get_json()["checks"]["broker"]["ok"] is True
