"""gunicorn's settings for `trainyard web` (`--config python:cli.gunicorn_conf`).

Read by gunicorn's master before it forks, so it imports neither Flask nor prometheus_client:
prometheus_client picks its multiprocess mode when first imported, from PROMETHEUS_MULTIPROC_DIR,
which `trainyard web` sets before starting gunicorn.
"""

from __future__ import annotations

import os
from typing import Any


def child_exit(server: Any, worker: Any) -> None:
    """Forget a dead web process's live gauges (its counts stay in the sum)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


# With TRAINYARD_LOG_FORMAT=json, gunicorn's own lines (its master, the access log) are JSON too.
if os.environ.get("TRAINYARD_LOG_FORMAT") == "json":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "shared.ops.logs.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            },
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            },
        },
        # gunicorn merges this over its defaults one key deep: its root logger needs a handler here.
        "root": {"handlers": ["stderr"], "level": "INFO"},
        "loggers": {
            "gunicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
        },
    }
