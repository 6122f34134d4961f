"""What a worker pool process holds: its settings and store, TensorFlow and MNIST loaded once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.config import Settings
from shared.ops.heap import freeze_startup_heap
from shared.store.engine import Store

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


# Sends a run's message to a queue: `send(run_id, queue)`.
Send = Callable[[int, str], None]


@dataclass(frozen=True)
class WorkerContext:
    """Everything a job needs from its process."""

    settings: Settings
    store: Store
    training: Training
    send: Send


_training: Training | None = None
_context: WorkerContext | None = None


def load_training(settings: Settings) -> Training:
    """Import TensorFlow and read MNIST, once per process."""
    global _training
    if _training is not None:
        return _training
    from worker.training.data import load_mnist, locate_mnist
    from worker.training.runtime import init_tensorflow

    threads = settings.threads_per_job()
    versions = init_tensorflow(threads)
    try:
        data, error = load_mnist(locate_mnist(settings)), None
    except Exception as exc:
        logger.error("MNIST is not available: %s", exc)
        data, error = None, str(exc)
    _training = Training(threads, versions, data, error)
    return _training


def init_child(settings: Settings, send: Send, inherited: Iterable[Store] = ()) -> WorkerContext:
    """Set up a freshly forked pool process: its own store, TensorFlow, the dataset.

    `inherited` are the stores of the parent the fork copied (a pool process that replaces a dead
    one is forked from a node that has its own): their pooled connections are the parent's
    sockets, so this process forgets them without closing them.
    """
    global _context
    for parent_store in inherited:
        parent_store.forget_parent_connections()
    # Opens no connection until used: each job works on a store of its own (`jobs.execute_run`).
    store = Store(settings.database_url, pooler=settings.database_pooler, connections=1)
    _context = WorkerContext(settings, store, load_training(settings), send)
    # TensorFlow's objects, loaded once, out of every full collection: a pass over them stalled
    # the job's threads (its lease renewal, its epoch write) for hundreds of milliseconds.
    freeze_startup_heap()
    return _context


def context() -> WorkerContext:
    """This pool process's context (set up by `init_child`)."""
    if _context is None:
        raise RuntimeError("this process was not set up as a worker (init_child)")
    return _context
