"""`trainyard runs purge`: archived runs older than the age go in batches, with what they own;
a dry run deletes nothing. In-process, on the session's database (SQLite, or PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

import shared.config
from cli.main import main
from shared.config import Settings
from shared.domain.status import RunStatus
from shared.store.models import Epoch, Run, utcnow
from tests.builders import make_run


def run_ids(session: Session) -> list[int]:
    session.expire_all()
    return list(session.scalars(select(Run.id).order_by(Run.id)))


def test_purge_deletes_old_archived_runs_in_batches(
    session: Session, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shared.config, "_settings", settings)
    done = RunStatus.SUCCEEDED
    old = [make_run(session, status=done, epochs_done=2).id for _ in range(3)]
    recent = make_run(session, status=done).id
    kept = make_run(session, status=done).id  # old, but not archived
    month_ago = utcnow() - timedelta(days=40)
    session.execute(update(Run).where(Run.id.in_([*old, kept])).values(finished_at=month_ago))
    session.execute(update(Run).where(Run.id.in_([*old, recent])).values(archived=True))
    session.commit()

    runner = CliRunner()
    dry = runner.invoke(main, ["runs", "purge", "--archived", "--older-than", "30d", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would delete 3 archived runs" in dry.output
    assert run_ids(session) == sorted([*old, recent, kept])

    real = runner.invoke(
        main, ["runs", "purge", "--archived", "--older-than", "30d", "--batch", "2"]
    )
    assert real.exit_code == 0, real.output
    assert "deleted 3 archived runs" in real.output
    assert run_ids(session) == [recent, kept]
    assert session.scalar(select(func.count()).select_from(Epoch)) == 0

    bad = runner.invoke(main, ["runs", "purge", "--archived", "--older-than", "a month"])
    assert bad.exit_code == 2 and "not an age" in bad.output
