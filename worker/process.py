"""What a worker process holds: its settings and store, TensorFlow and MNIST loaded once, and (in
the node's main process) the registry heartbeat."""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.config import Settings
from shared.db import Store
from shared.runs import fail_abandoned_runs
from shared.workers import register_worker, stop_worker, worker_heartbeat

if TYPE_CHECKING:
    from worker.training.data import Mnist

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Training:
    """What this process trains with: TensorFlow's thread count and versions, and MNIST (or why
    it could not be read, so each job fails with the reason instead of the worker dying)."""

    threads: int
    versions: dict[str, str]
    data: Mnist | None
    dataset_error: str | None

    @property
    def environment(self) -> dict[str, str]:
        """The reproducibility record of every run trained here."""
        if self.data is None:
            return dict(self.versions)
        return {**self.versions, "dataset_sha256": self.data.sha256}


@dataclass(frozen=True)
class WorkerContext:
    """Everything a job needs from its process."""

    settings: Settings
    store: Store
    training: Training


_training: Training | None = None
_context: WorkerContext | None = None


def load_training(settings: Settings) -> Training:
    """Import TensorFlow and read MNIST, once per process."""
    global _training
    if _training is not None:
        return _training
    from worker.training.data import load_mnist, locate_mnist
    from worker.training.runtime import available_cpus, init_tensorflow

    threads = settings.tf_threads or max(1, available_cpus() // max(1, settings.concurrency))
    versions = init_tensorflow(threads)
    try:
        data, error = load_mnist(locate_mnist(settings)), None
    except Exception as exc:
        logger.error("MNIST is not available: %s", exc)
        data, error = None, str(exc)
    _training = Training(threads, versions, data, error)
    return _training


def init_child(settings: Settings) -> WorkerContext:
    """Set up a freshly forked pool process: its own store, TensorFlow, the dataset."""
    global _context
    _context = WorkerContext(settings, Store(settings.database_url), load_training(settings))
    return _context


def context() -> WorkerContext:
    """This pool process's context (set up by `init_child`)."""
    if _context is None:
        raise RuntimeError("this process was not set up as a worker (init_child)")
    return _context


@dataclass
class NodeRegistry:
    """A worker node's row in the registry, kept fresh by a background thread of its main process.

    The same thread fails runs whose worker vanished: three missed timeouts mean no redelivery
    picked the run up.
    """

    name: str
    settings: Settings
    store: Store
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        """Register the node and start the heartbeat thread."""
        self._register()
        threading.Thread(target=self._loop, name="registry", daemon=True).start()
        logger.info("worker %s registered (concurrency %d)", self.name, self.settings.concurrency)

    def _register(self) -> None:
        with self.store.session_scope() as session:
            register_worker(
                session, self.name, socket.gethostname(), os.getpid(), self.settings.concurrency
            )

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval):
            try:
                with self.store.session_scope() as session:
                    alive = worker_heartbeat(session, self.name)
                    fail_abandoned_runs(session, self.settings.heartbeat_timeout * 3)
                if not alive:
                    self._register()
            except Exception:
                logger.exception("worker heartbeat failed; retrying")

    def stop(self) -> None:
        """Stop the heartbeat and mark the node stopped."""
        self._stop.set()
        try:
            with self.store.session_scope() as session:
                stop_worker(session, self.name)
        except Exception:
            logger.exception("could not mark worker %s stopped", self.name)
