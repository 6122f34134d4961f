"""How processes log: text lines or one JSON object a line, each line of a job naming its run.

A job binds its run, attempt and worker (`job_fields`) for as long as it runs; every record
logged meanwhile from that thread (or a thread started in that context) carries them:
`run_id`, `attempt` and `worker` keys in JSON, `[run 12 attempt 1 on w1@host]` in text.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
JOB_KEYS = ("run_id", "attempt", "worker")
_job: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "trainyard_job", default=None
)


@contextmanager
def job_fields(**fields: Any) -> Iterator[None]:
    """Name the job (run_id, attempt, worker) on every record logged inside the block."""
    token = _job.set({**(_job.get() or {}), **fields})
    try:
        yield
    finally:
        _job.reset(token)


def add_job_fields(**fields: Any) -> None:
    """Add to the current job's fields (the attempt, once the claim gives it)."""
    _job.set({**(_job.get() or {}), **fields})


class JobFilter(logging.Filter):
    """Put the current job's fields on each record (None outside a job)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _job.get() or {}
        for key in JOB_KEYS:
            if not hasattr(record, key):
                setattr(record, key, fields.get(key))
        parts = []
        if record.run_id is not None:  # type: ignore[attr-defined]
            parts.append(f"run {record.run_id}")  # type: ignore[attr-defined]
            if record.attempt is not None:  # type: ignore[attr-defined]
                parts.append(f"attempt {record.attempt}")  # type: ignore[attr-defined]
        if record.worker is not None:  # type: ignore[attr-defined]
            parts.append(f"on {record.worker}")  # type: ignore[attr-defined]
        record.job = f" [{' '.join(parts)}]" if parts else ""
        return True


TEXT_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s%(job)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, process, message, the job's fields, and the
    exception's traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        for key in JOB_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of `text` or `json`."""
    if log_format not in FORMATS:
        raise ValueError(
            f"TRAINYARD_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {log_format!r}"
        )
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(log_format: str, level: int | str = logging.INFO) -> None:
    """Send every record to stderr in `log_format`, with the current job's fields."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(JobFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Python's warnings (Celery's root warning, deprecations) become records in the same format.
    logging.captureWarnings(True)
