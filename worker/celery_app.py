"""The Celery app, configured from shared settings, and the hooks that set up each process."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, signals

from shared.celery_config import celery_config
from shared.config import Settings, get_settings

logger = logging.getLogger(__name__)


def create_celery(settings: Settings | None = None) -> Celery:
    """Create the Celery app and register its task."""
    settings = settings or get_settings()
    app = Celery("trainyard")
    app.conf.update(celery_config(settings))
    from worker import tasks

    tasks.register(app, settings)
    return app


app = create_celery()


@signals.worker_init.connect
def _remember_concurrency(sender: Any = None, **_: Any) -> None:
    # Children read this to size TensorFlow's thread pools to their share of the CPUs.
    os.environ["TRAINYARD_WORKER_CONCURRENCY"] = str(getattr(sender, "concurrency", 1) or 1)


@signals.worker_process_init.connect
def _init_child(**_: Any) -> None:
    from worker import process

    process.init_child(int(os.environ.get("TRAINYARD_WORKER_CONCURRENCY", "1")))


@signals.worker_ready.connect
def _register(sender: Any = None, **_: Any) -> None:
    from worker import process

    process.start_registry(
        sender.hostname, int(os.environ.get("TRAINYARD_WORKER_CONCURRENCY", "1"))
    )


@signals.worker_shutdown.connect
def _unregister(**_: Any) -> None:
    from worker import process

    process.stop_registry()
