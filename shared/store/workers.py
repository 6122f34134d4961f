"""The worker registry: each worker process says who it is and that it is alive."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.domain.status import RunStatus
from shared.store.clock import db_now
from shared.store.engine import rows_changed
from shared.store.models import Run, Worker


def register_worker(session: Session, name: str, hostname: str, pid: int, concurrency: int) -> None:
    """Insert or refresh the worker's row when it starts."""
    worker = session.scalar(select(Worker).where(Worker.name == name))
    if worker is None:
        worker = Worker(name=name)
        session.add(worker)
    worker.hostname = hostname
    worker.pid = pid
    worker.concurrency = concurrency
    worker.started_at = db_now()
    worker.heartbeat_at = db_now()
    worker.stopped_at = None
    session.flush()


def worker_heartbeat(session: Session, name: str) -> bool:
    """Refresh the worker's heartbeat; return False when its row is gone (then re-register)."""
    result = session.execute(
        update(Worker).where(Worker.name == name).values(heartbeat_at=db_now())
    )
    return rows_changed(result) == 1


def stop_worker(session: Session, name: str) -> None:
    """Mark the worker as stopped on a clean shutdown."""
    session.execute(update(Worker).where(Worker.name == name).values(stopped_at=db_now()))


def list_workers(
    session: Session, alive_within: float, include_dead: bool = False
) -> list[tuple[Worker, bool, list[int]]]:
    """Return workers with whether each is alive and the ids of the runs it holds."""
    # Alive by the database's clock: a heartbeat is never judged by the reader's own clock.
    alive_now = Worker.stopped_at.is_(None) & (Worker.heartbeat_at >= db_now(-alive_within))
    workers = session.execute(select(Worker, alive_now).order_by(Worker.name)).all()
    running: dict[str, list[int]] = {}
    for run_id, holder in session.execute(
        select(Run.id, Run.worker).where(Run.status == RunStatus.RUNNING).order_by(Run.id)
    ):
        if holder is not None:
            running.setdefault(holder, []).append(run_id)
    rows: list[tuple[Worker, bool, list[int]]] = []
    for node, is_alive in workers:
        if is_alive or include_dead:
            rows.append((node, bool(is_alive), running.get(node.name, [])))
    return rows
