"""Celery's settings as a plain dict, so the web's producer and the worker agree (no Celery import)."""

from __future__ import annotations

from typing import Any

from shared.config import Settings

TASK_NAME = "trainyard.train_run"


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
        "task_acks_late": True,  # the task is idempotent: a redelivery resumes or skips
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": settings.concurrency,
        "worker_proc_alive_timeout": 120,  # importing TensorFlow in a new child takes seconds
        "worker_hijack_root_logger": False,
        "worker_send_task_events": is_redis,  # for Flower; the SQLite transport has no fanout
        "task_send_sent_event": is_redis,
        "enable_utc": True,
    }
