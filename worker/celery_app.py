"""The Celery app, configured from shared settings, and the hooks that set up each process."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from shared.celery_config import celery_config
from shared.config import Settings, get_settings
from shared.db import Store
from worker.process import NodeRegistry, init_child

logger = logging.getLogger(__name__)


def create_celery(settings: Settings) -> Celery:
    """Create the Celery app and register its task."""
    app = Celery("trainyard")
    app.conf.update(celery_config(settings))
    from worker import tasks

    tasks.register(app, settings)
    return app


settings = get_settings()
app = create_celery(settings)
_registry: NodeRegistry | None = None  # the node's, once its main process is ready


@signals.worker_process_init.connect
def _init_child(**_: Any) -> None:
    init_child(settings)


@signals.worker_ready.connect
def _register(sender: Any = None, **_: Any) -> None:
    global _registry
    _registry = NodeRegistry(sender.hostname, settings, Store(settings.database_url))
    _registry.start()


@signals.worker_shutdown.connect
def _unregister(**_: Any) -> None:
    if _registry is not None:
        _registry.stop()
