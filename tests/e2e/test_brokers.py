"""The same path on each broker trainyard supports: Redis, RabbitMQ (a durable quorum queue,
publisher confirms) and the embedded SQLite broker; a submit's time to a running worker on each."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from kombu import Connection
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.domain.status import RunStatus
from shared.ops.celery_config import celery_config
from shared.store.models import Run
from shared.store.queries import get_run
from tests.support.app import create_test_app
from tests.support.machine import RABBIT_URL, REDIS_URL
from tests.support.processes import worker_process
from tests.support.waiting import wait_for

BROKERS = ("redis", "rabbitmq", "embedded")


def broker_url(kind: str, tmp_path: Path) -> str:
    return {
        "redis": REDIS_URL,
        "rabbitmq": RABBIT_URL,
        "embedded": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
    }[kind]


@pytest.fixture(params=BROKERS)
def on_broker(
    request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
) -> Iterator[Settings]:
    yield settings.with_overrides(
        broker_url=broker_url(request.param, tmp_path),
        queue=f"trainyard-{request.param}-{uuid.uuid4().hex[:8]}",
    )


def read(session: Session, run_id: int) -> Run:
    session.expire_all()
    return get_run(session, run_id)


def test_a_run_goes_from_submit_to_succeeded_on_each_broker(
    on_broker: Settings, session: Session
) -> None:
    client: FlaskClient = create_test_app(on_broker).test_client()
    with worker_process(on_broker, name="broker-worker"):
        latencies = []
        for seed in (1, 2, 3):
            began = time.monotonic()
            run_id = client.post(
                "/api/runs", json={"params": {"train_samples": 1000, "epochs": 1, "seed": seed}}
            ).get_json()["id"]
            wait_for(
                lambda run_id=run_id: read(session, run_id).status != RunStatus.QUEUED,
                60,
                interval=0.02,
                what="the claim",
            )
            latencies.append(time.monotonic() - began)
            wait_for(
                lambda run_id=run_id: read(session, run_id).status.finished, 120, what="the run"
            )
            assert read(session, run_id).status == RunStatus.SUCCEEDED
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
    client = create_test_app(rabbit).test_client()
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
