"""Celery's settings as a plain dict, so the web's producer and the worker agree (no Celery import)."""

from __future__ import annotations

from typing import Any

from shared.config import Settings
from shared.db import sqlite_path

TASK_NAME = "trainyard.train_run"


def prepare_broker(settings: Settings) -> None:
    """Create the embedded broker's folder: its SQLite file may live anywhere the URL says."""
    path = sqlite_path(settings.broker_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def celery_config(settings: Settings) -> dict[str, Any]:
    """Return Celery's settings for trainyard: JSON only, one message at a time, acks late."""
    transport_options: dict[str, Any] = {}
    if settings.broker_url.startswith("redis"):
        # A message unacknowledged this long is handed to another worker: longer than any job.
        transport_options["visibility_timeout"] = settings.task_time_limit + 600
    if settings.broker_url.startswith("sqla+sqlite"):
        # kombu hands these to create_engine: wait for SQLite's lock rather than fail at once.
        transport_options["connect_args"] = {"timeout": 30}
    is_redis = settings.broker_url.startswith("redis")
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
        "worker_send_task_events": is_redis,  # for Flower; the SQLite transport has no fanout
        "task_send_sent_event": is_redis,
        "enable_utc": True,
    }
