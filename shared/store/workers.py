"""The worker registry: each worker process says who it is and that it is alive."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, String, cast, exists, func, select, update
from sqlalchemy.orm import Session

from shared.domain.status import RunStatus
from shared.store.clock import db_now
from shared.store.engine import forgettable
from shared.store.models import ClusterDuty, Run, Worker


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


@dataclass(frozen=True)
class Beat:
    """What a node's heartbeat read back in the same statement."""

    registered: bool  # False: the node's row was gone (it registers again)
    holding: dict[int, int | None]  # the runs it holds: run id -> the holding process's pid
    due: frozenset[str]  # the asked duties whose interval has passed, on the database's clock


def heartbeat(connection: Connection, name: str, duties: dict[str, float]) -> Beat:
    """Refresh the node's heartbeat and read, in the same statement, the runs it holds and which
    of `duties` (name -> interval in seconds) are due. A node's idle interval is then this one
    statement (run in autocommit: through a transaction pooler, one round trip), not a
    transaction of its own for the heartbeat and another to look for work. Like a lease's
    renewal it does not wait for the WAL's flush (`forgettable`)."""
    held = select(
        func.aggregate_strings(
            cast(Run.id, String) + ":" + func.coalesce(cast(Run.worker_pid, String), ""), ","
        )
    ).where(Run.status == RunStatus.RUNNING, Run.worker == name)
    due = [
        exists()
        .where(ClusterDuty.name == duty, ClusterDuty.last_run_at < db_now(-every))
        .label(f"due_{i}")
        for i, (duty, every) in enumerate(duties.items())
    ]
    beat = update(Worker).where(Worker.name == name).values(heartbeat_at=db_now())
    row = connection.execute(
        forgettable(beat, connection.dialect.name).returning(held.scalar_subquery(), *due)
    ).first()
    if row is None:
        return Beat(False, {}, frozenset())
    holding: dict[int, int | None] = {}
    for pair in filter(None, (row[0] or "").split(",")):
        run_id, pid = pair.split(":")
        holding[int(run_id)] = int(pid) if pid else None
    return Beat(
        True, holding, frozenset(d for d, is_due in zip(duties, row[1:], strict=True) if is_due)
    )


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
