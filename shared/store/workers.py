"""The worker registry: each worker process says who it is and that it is alive."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.domain.status import RunStatus
from shared.store.engine import rows_changed
from shared.store.models import Run, Worker, utcnow


def register_worker(session: Session, name: str, hostname: str, pid: int, concurrency: int) -> None:
    """Insert or refresh the worker's row when it starts."""
    worker = session.scalar(select(Worker).where(Worker.name == name))
    now = utcnow()
    if worker is None:
        worker = Worker(name=name)
        session.add(worker)
    worker.hostname = hostname
    worker.pid = pid
    worker.concurrency = concurrency
    worker.started_at = now
    worker.heartbeat_at = now
    worker.stopped_at = None
    session.flush()


def worker_heartbeat(session: Session, name: str) -> bool:
    """Refresh the worker's heartbeat; return False when its row is gone (then re-register)."""
    result = session.execute(
        update(Worker).where(Worker.name == name).values(heartbeat_at=utcnow())
    )
    return rows_changed(result) == 1


def stop_worker(session: Session, name: str) -> None:
    """Mark the worker as stopped on a clean shutdown."""
    session.execute(update(Worker).where(Worker.name == name).values(stopped_at=utcnow()))


def list_workers(
    session: Session, alive_within: float, include_dead: bool = False
) -> list[tuple[Worker, bool, list[int]]]:
    """Return workers with whether each is alive and the ids of the runs it holds."""
    cutoff = utcnow() - timedelta(seconds=alive_within)
    workers = list(session.scalars(select(Worker).order_by(Worker.name)))
    running: dict[str, list[int]] = {}
    for run_id, holder in session.execute(
        select(Run.id, Run.worker).where(Run.status == RunStatus.RUNNING).order_by(Run.id)
    ):
        if holder is not None:
            running.setdefault(holder, []).append(run_id)
    rows = []
    for worker in workers:
        alive = worker.stopped_at is None and worker.heartbeat_at >= cutoff
        if alive or include_dead:
            rows.append((worker, alive, running.get(worker.name, [])))
    return rows
