"""A pool process's setup after the fork: what it inherited from its node stays the node's."""

from __future__ import annotations

import gc
import os

from sqlalchemy import text

from shared.config import Settings
from shared.store.engine import Store
from worker.process import init_child, load_training


def server_connection(store: Store) -> object:
    """Which connection the store's pool hands out: PostgreSQL's backend pid (a connection closed
    under the pool is replaced by another backend), else the sqlite3 connection's identity."""
    with store.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            return connection.scalar(text("SELECT pg_backend_pid()"))
        return id(connection.connection.dbapi_connection)


def test_a_pool_process_forked_from_a_running_node_leaves_the_node_s_connections_alone(
    settings: Settings,
) -> None:
    # Celery forks a replacement for a dead pool process from the node's main process, whose
    # store (the sweeps') has pooled connections: the child must never use or close them.
    load_training(settings)  # the child finds TensorFlow and MNIST loaded instead of loading them
    node = Store(settings.database_url)
    try:
        before = server_connection(node)  # checked back in: the node's pool keeps it
        pid = os.fork()
        if pid == 0:  # the pool process
            code = 1
            try:
                init_child(settings, lambda run_id, queue: None, [node])
                kept = node.engine.pool.checkedin()
                node.close()  # whatever the child does with what it inherited at its exit
                # Its startup heap (TensorFlow's) is kept out of the collector's full passes.
                code = 2 if kept else 0 if gc.get_freeze_count() > 100_000 else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        assert code != 2, "the pool process kept the node's connections"
        assert code != 3, "the pool process left its startup heap to the collector"
        assert code == 0
        assert server_connection(node) == before, "the pool process closed the node's connection"
    finally:
        node.close()
