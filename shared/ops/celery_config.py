"""Celery's settings as a plain dict, so the web's producer and the worker agree (no Celery import)."""

from __future__ import annotations

from typing import Any

from kombu import Connection

from shared.config import Settings
from shared.store.engine import sqlite_path

TASK_NAME = "trainyard.train_run"


def prepare_broker(settings: Settings) -> None:
    """Create the embedded broker's folder: its SQLite file may live anywhere the URL says."""
    path = sqlite_path(settings.broker_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def broker_kind(url: str) -> str:
    """redis, amqp (RabbitMQ) or sqlalchemy (the embedded SQLite broker), from the URL."""
    scheme = url.split("://", 1)[0].lower()
    if scheme.startswith("redis") or scheme == "rediss":
        return "redis"
    if scheme in ("amqp", "amqps", "pyamqp"):
        return "amqp"
    return "sqlalchemy"


def declare_embedded_queue(settings: Settings) -> None:
    """Create the training queue on the embedded SQLite broker before several workers start.

    A worker's first look at its queue inserts the queue's row there, and two workers starting
    together both insert it: one dies of the unique constraint. Redis and RabbitMQ declare queues
    safely (and RabbitMQ's must keep Celery's quorum arguments), so only the embedded one is made.
    """
    if broker_kind(settings.broker_url) != "sqlalchemy":
        return
    prepare_broker(settings)
    options = celery_config(settings)["broker_transport_options"]
    with Connection(settings.broker_url, transport_options=options) as connection:
        connection.default_channel.queue_declare(queue=settings.queue)


def celery_config(settings: Settings) -> dict[str, Any]:
    """Return Celery's settings for trainyard: JSON only, one message at a time, acks late."""
    kind = broker_kind(settings.broker_url)
    transport_options: dict[str, Any] = {}
    config: dict[str, Any] = {}
    if kind == "redis":
        # A message unacknowledged this long is handed to another worker: longer than any job.
        transport_options["visibility_timeout"] = settings.task_time_limit + 600
    elif kind == "amqp":
        # A submit is answered once RabbitMQ has confirmed the message (replicated, for a quorum
        # queue): publisher confirms.
        transport_options["confirm_publish"] = True
        # The training queue is a durable quorum queue (Raft-replicated across the nodes of a
        # RabbitMQ cluster). A job holds its message unacknowledged while it trains: the consumer
        # timeout outlasts the longest job, so a healthy worker's message is never taken away.
        # (RabbitMQ 3.12 reads x-consumer-timeout; older nodes need consumer_timeout in
        # rabbitmq.conf, as the README says.)
        arguments = {
            "x-queue-type": "quorum",
            "x-consumer-timeout": (settings.task_time_limit + 600) * 1000,
        }
        config["task_queues"] = {
            settings.queue: {
                "exchange": settings.queue,
                "exchange_type": "direct",
                "routing_key": settings.queue,
                "queue_arguments": arguments,
            }
        }
        config["task_create_missing_queue_type"] = "quorum"
        config["task_default_queue_type"] = "quorum"
    else:
        # kombu hands these to create_engine: wait for SQLite's lock rather than fail at once.
        transport_options["connect_args"] = {"timeout": 30}
    events = kind != "sqlalchemy"  # for Flower; the SQLite transport has no fanout
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        "task_default_queue": settings.queue,
        # Acknowledged when the task ends, so a busy worker holds no second message; a message
        # redelivered or sent twice is harmless (only a queued run is claimed). A lost worker's
        # run is the store's to recover (the sweeps), not the broker's: no requeue on loss.
        "task_acks_late": True,
        "task_reject_on_worker_lost": False,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": settings.jobs_at_once(),
        "worker_proc_alive_timeout": 120,  # importing TensorFlow in a new child takes seconds
        "worker_hijack_root_logger": False,
        "worker_send_task_events": events,
        "task_send_sent_event": events,
        "enable_utc": True,
        **config,
    }
