"""The Celery app, configured from shared settings, and the hooks that set up each process."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from shared.config import Settings, get_settings
from shared.ops.celery_config import TASK_NAME, celery_config, prepare_broker
from shared.ops.logs import configure_logging
from shared.store.engine import Store
from worker.node import Node
from worker.process import init_child

logger = logging.getLogger(__name__)


def create_celery(settings: Settings) -> Celery:
    """Create the Celery app and register its task."""
    prepare_broker(settings)
    app = Celery("trainyard")
    app.conf.update(celery_config(settings))
    from worker import tasks

    tasks.register(app, settings)
    return app


settings = get_settings()
app = create_celery(settings)
_node: Node | None = None  # this worker's, once its main process is ready


def send(run_id: int, queue: str) -> None:
    """Send a run's message (a requeued or handed-over run, a message the broker lost)."""
    app.send_task(TASK_NAME, args=[run_id], queue=queue)


@signals.celeryd_init.connect
@signals.setup_logging.connect
def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    # celeryd_init comes first, before the worker checks its privileges (a warning, in the log's
    # format too); setup_logging again with the worker's log level.
    # Celery leaves logging to us once setup_logging is connected: text or JSON, each job's lines
    # naming it.
    configure_logging(settings.log_format, loglevel or logging.INFO)


@signals.worker_process_init.connect
def _init_child(**_: Any) -> None:
    # A replacement for a dead pool process is forked after worker_ready: it inherits the node.
    init_child(settings, send, [_node.store] if _node is not None else [])


@signals.worker_ready.connect
def _start_node(sender: Any = None, **_: Any) -> None:
    global _node
    # The node's one connection: its heartbeat and its share of the cluster's sweeps.
    store = Store(
        settings.database_url,
        pooler=settings.database_pooler,
        name=f"trainyard-node/{sender.hostname}",
        connections=1,
    )
    _node = Node(sender.hostname, settings, store, send)
    _node.start()


@signals.worker_shutting_down.connect
def _hand_over(**_: Any) -> None:
    # A warm shutdown (SIGTERM: `docker compose stop`, an upgrade) waits for running tasks:
    # ask them to checkpoint and go back to the queue instead of finishing here.
    if _node is not None:
        _node.hand_over()


@signals.worker_shutdown.connect
def _stop_node(**_: Any) -> None:
    if _node is not None:
        _node.stop()
