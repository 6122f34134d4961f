"""Per-process state of a worker: TensorFlow and MNIST loaded once, and the registry heartbeat."""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from shared import db
from shared.config import get_settings
from shared.runs import fail_stale_runs
from shared.workers import register_worker, stop_worker, worker_heartbeat

logger = logging.getLogger(__name__)

_state: dict[str, Any] = {}
_registry: dict[str, Any] = {}


def init_child(concurrency: int) -> None:
    """Set up a freshly forked worker process: new DB connections, TensorFlow, the dataset."""
    # Drop the parent's pooled connections without closing them (they are the parent's sockets),
    # then open our own.
    db.dispose_engine()
    db.configure()
    load_runtime(concurrency)


def load_runtime(concurrency: int = 1) -> dict[str, Any]:
    """Import TensorFlow and read MNIST, once per process; return the cached state."""
    if _state:
        return _state
    from worker.training.data import load_mnist, locate_mnist
    from worker.training.runtime import available_cpus, init_tensorflow

    settings = get_settings()
    threads = settings.tf_threads or max(1, available_cpus() // max(1, concurrency))
    environment = init_tensorflow(threads)
    try:
        data = load_mnist(locate_mnist(settings))
    except Exception as exc:  # kept, so each job fails with the reason instead of the worker dying
        logger.error("MNIST is not available: %s", exc)
        data, environment["dataset_error"] = None, str(exc)
    else:
        environment["dataset_sha256"] = data.sha256
    _state.update(data=data, environment=environment, threads=threads)
    return _state


def _registry_loop(name: str, concurrency: int, stop: threading.Event) -> None:
    settings = get_settings()
    while not stop.wait(settings.heartbeat_interval):
        try:
            with db.session_scope() as session:
                if not worker_heartbeat(session, name):
                    register_worker(session, name, socket.gethostname(), os.getpid(), concurrency)
                # Three missed timeouts: no redelivery picked the run up, so say it failed.
                fail_stale_runs(session, settings.heartbeat_timeout * 3)
        except Exception:
            logger.exception("worker heartbeat failed; retrying")


def start_registry(name: str, concurrency: int) -> None:
    """Register this worker node and keep its heartbeat fresh from a background thread."""
    db.configure()
    with db.session_scope() as session:
        register_worker(session, name, socket.gethostname(), os.getpid(), concurrency)
    stop = threading.Event()
    thread = threading.Thread(target=_registry_loop, args=(name, concurrency, stop), daemon=True)
    thread.start()
    _registry.update(name=name, stop=stop, thread=thread)
    logger.info("worker %s registered (concurrency %d)", name, concurrency)


def stop_registry() -> None:
    """Stop the heartbeat and mark this worker node stopped."""
    if not _registry:
        return
    _registry["stop"].set()
    try:
        with db.session_scope() as session:
            stop_worker(session, _registry["name"])
    except Exception:
        logger.exception("could not mark worker %s stopped", _registry["name"])
