"""The one clock on the real database: `db_now` is the server's time, comparable with every stored
time, so a lease is judged by the statement that acts on it, never by a host's clock."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.store.clock import db_now, now_of
from shared.store.lease import claim
from shared.store.models import Run
from shared.store.sweeps import expired
from tests.builders import make_run


def test_db_now_with_an_offset_compares_with_stored_times_to_the_millisecond(
    session: Session,
) -> None:
    before = now_of(session)
    later = session.scalar(select(db_now(90.5)))
    earlier = session.scalar(select(db_now(-3)))
    assert later is not None and earlier is not None and later.tzinfo is not None
    assert timedelta(seconds=90.4) < later - before < timedelta(seconds=95)
    assert timedelta(seconds=-3.1) < earlier - before < timedelta(seconds=2)
    run = make_run(session)
    # Stored a few milliseconds ahead: still ahead of db_now (stored text and db_now compare).
    session.execute(update(Run).where(Run.id == run.id).values(heartbeat_at=db_now(0.05)))
    session.commit()
    assert session.scalar(select(Run.heartbeat_at > db_now()).where(Run.id == run.id))


def test_a_lease_is_written_and_judged_on_the_database_clock(session: Session) -> None:
    run = make_run(session)
    lease = claim(session, run.id, "a@host", pid=1, seconds=0.3)
    session.commit()
    assert lease is not None
    session.refresh(run)
    assert run.started_at is not None and run.lease_expires_at is not None
    lasts = run.lease_expires_at - run.started_at
    assert timedelta(seconds=0.29) < lasts < timedelta(seconds=0.35)
    assert run.id not in [r.id for r in expired(session)]
    session.execute(update(Run).where(Run.id == run.id).values(lease_expires_at=db_now(-0.001)))
    session.commit()
    assert run.id in [r.id for r in expired(session)]
