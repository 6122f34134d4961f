"""What the workers views show: each registered worker, whether it is alive, the runs it holds."""

from __future__ import annotations

from sqlalchemy.orm import Session

from shared.read.models import WorkerOut, WorkersOut
from shared.store.models import Worker
from shared.store.workers import list_workers


def worker_out(worker: Worker, alive: bool, running: list[int]) -> WorkerOut:
    """A registered worker with whether it is alive and which runs it holds."""
    return WorkerOut(
        name=worker.name,
        hostname=worker.hostname,
        pid=worker.pid,
        concurrency=worker.concurrency,
        started_at=worker.started_at,
        heartbeat_at=worker.heartbeat_at,
        stopped_at=worker.stopped_at,
        alive=alive,
        running=running,
    )


def workers(session: Session, alive_within: float, include_dead: bool) -> WorkersOut:
    """Registered workers (alive ones unless `include_dead`), and the runs each holds."""
    rows = list_workers(session, alive_within, include_dead)
    return WorkersOut(workers=[worker_out(*row) for row in rows])
