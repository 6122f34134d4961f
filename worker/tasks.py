"""The one Celery task: train a run, given its id. It only calls plain functions in `jobs`."""

from __future__ import annotations

from typing import Any

from celery import Celery

from shared.config import Settings
from shared.ops.celery_config import TASK_NAME
from shared.ops.logs import job_fields
from worker import jobs, process


def register(app: Celery, settings: Settings) -> None:
    """Register the training task on `app`, with time limits from the settings."""

    @app.task(
        name=TASK_NAME,
        bind=True,
        acks_late=True,
        soft_time_limit=settings.task_time_limit,
        time_limit=settings.task_time_limit + 60,
    )
    def train_run(self: Any, run_id: int) -> str:
        """Train the run if it is queued; every other case is the store's to settle."""
        worker = self.request.hostname or "unknown"
        with job_fields(run_id=run_id, worker=worker):
            return jobs.execute_run(process.context(), run_id, worker).value
