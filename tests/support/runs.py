"""Reading runs back from the store as a test checks them: fresh each time, never a cached row."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.store.engine import Store
from shared.store.models import Epoch, Run
from shared.store.queries import get_run


def read_run(source: Store | Session, run_id: int) -> Run:
    """The run as the store has it now. From a session: that session's row, refreshed (its
    relationships load on use). From a store: a row read in a session of its own, detached."""
    if isinstance(source, Session):
        source.expire_all()
        return get_run(source, run_id)
    with source.session_scope() as session:
        run = session.get(Run, run_id)
        assert run is not None, f"no run {run_id}"
        session.expunge(run)
        return run


def run_count(session: Session) -> int:
    """How many runs the store holds now."""
    session.expire_all()
    return int(session.scalar(select(func.count()).select_from(Run)) or 0)


def epoch_rows(source: Store | Session, run_id: int) -> list[tuple[int, int]]:
    """(epoch, attempt) of each epoch recorded for the run, in epoch order."""
    query = select(Epoch.epoch, Epoch.attempt).where(Epoch.run_id == run_id).order_by(Epoch.epoch)
    if isinstance(source, Session):
        source.expire_all()
        return [(epoch, attempt) for epoch, attempt in source.execute(query)]
    with source.session_scope() as session:
        return [(epoch, attempt) for epoch, attempt in session.execute(query)]
