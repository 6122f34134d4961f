"""Writes on a run's history: rename, tag, annotate, archive and delete, alone or in bulk, and
the purge of old archived runs. Each takes the session and never commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from shared.domain.errors import Conflict, InvalidParams
from shared.domain.history import MAX_TAGS
from shared.domain.metrics import RUNS_DELETED
from shared.domain.status import FINISHED_STATUSES
from shared.store.metrics import count
from shared.store.models import Checkpoint, Epoch, Evaluation, Run, Study, TrainedModel
from shared.store.queries import apply_filters, get_run
from shared.store.studies import get_study

# The tables whose rows belong to a run, deleted before it (explicitly: SQLite may run with its
# foreign keys off, and then nothing cascades).
OWNED = (Epoch, Evaluation, Checkpoint, TrainedModel)


def update_run(session: Session, run_id: int, changes: dict[str, Any]) -> Run:
    """Set any of name, tags, note and archived on a run; 404 for no such run."""
    run = get_run(session, run_id)
    for field, value in changes.items():
        setattr(run, field, value)
    session.flush()
    return run


def _refusal(run: Run) -> str | None:
    """Why a run may not be deleted on its own (None: it may)."""
    if run.status not in FINISHED_STATUSES:
        return f"it is {run.status.value}: cancel it first"
    if run.study_id is not None:
        return f"it is a replicate of study {run.study_id}: delete the study"
    return None


def delete_runs_rows(session: Session, run_ids: Sequence[int]) -> None:
    """Delete these runs and every row they own, whatever their state (callers check), and count
    them by status, so the store's runs-by-status figures stay true (`/metrics`)."""
    for start in range(0, len(run_ids), 500):  # bounded IN lists
        chunk = list(run_ids[start : start + 500])
        gone = session.execute(
            select(Run.status, func.count()).where(Run.id.in_(chunk)).group_by(Run.status)
        )
        for status, number in gone:
            count(session, RUNS_DELETED, status.value, by=number)
        for table in OWNED:
            session.execute(delete(table).where(table.run_id.in_(chunk)))
        session.execute(delete(Run).where(Run.id.in_(chunk)))


def delete_run(session: Session, run_id: int) -> None:
    """Delete a finished run with its epochs, evaluation, checkpoint and model; 404 for no such
    run, 409 for one that is queued or running, or that belongs to a study."""
    run = get_run(session, run_id)
    if run.status not in FINISHED_STATUSES:
        raise Conflict(
            f"run {run_id} is {run.status.value}: cancel it before deleting it",
            {"status": run.status.value},
        )
    if run.study_id is not None:
        raise Conflict(
            f"run {run_id} is a replicate of study {run.study_id}: deleting it alone would change"
            f" the study's statistics; DELETE /api/studies/{run.study_id} deletes the study and"
            " its runs",
            {"study_id": f"/api/studies/{run.study_id}"},
        )
    delete_runs_rows(session, [run_id])
    session.expunge(run)


def delete_study(session: Session, study_id: int) -> int:
    """Delete a study and all its runs; 409 while any of them is queued or running. Returns
    how many runs went."""
    study = get_study(session, study_id)
    rows = session.execute(select(Run.id, Run.status).where(Run.study_id == study_id)).all()
    busy = sorted({status.value for _, status in rows if status not in FINISHED_STATUSES})
    if busy:
        raise Conflict(
            f"study {study_id} has runs that are {' and '.join(busy)}: cancel it first",
            {"status": ", ".join(busy)},
        )
    delete_runs_rows(session, [run_id for run_id, _ in rows])
    session.delete(study)
    session.flush()
    return len(rows)


def archive_study(session: Session, study_id: int, archived: bool) -> Study:
    """Archive (or restore) every run of a study."""
    study = get_study(session, study_id)
    session.execute(update(Run).where(Run.study_id == study_id).values(archived=archived))
    return study


def select_ids(session: Session, query: BaseModel, bound: int) -> list[int]:
    """The ids of the runs matching `query`'s filters, at most `bound` + 1 of them (one more
    says there are too many)."""
    statement = apply_filters(select(Run.id), query).order_by(Run.id).limit(bound + 1)
    return list(session.scalars(statement))


def apply_bulk(
    session: Session, run_ids: Sequence[int], action: str, tags: Sequence[str] = ()
) -> tuple[int, dict[int, str]]:
    """Do `action` to the runs: how many it changed, and why the others were left (by id)."""
    runs = list(session.scalars(select(Run).where(Run.id.in_(list(run_ids)))))
    found = {run.id for run in runs}
    skipped = {run_id: "no such run" for run_id in run_ids if run_id not in found}
    changed: list[Run] = []
    for run in runs:
        if action == "delete":
            reason = _refusal(run)
            if reason:
                skipped[run.id] = reason
                continue
        elif action in ("archive", "unarchive"):
            run.archived = action == "archive"
        elif action == "tag":
            merged = list(dict.fromkeys([*(run.tags or []), *tags]))
            if len(merged) > MAX_TAGS:
                skipped[run.id] = f"it would have more than {MAX_TAGS} tags"
                continue
            run.tags = merged
        elif action == "untag":
            run.tags = [tag for tag in run.tags or [] if tag not in tags]
        else:
            raise InvalidParams(f"unknown action {action!r}", {"action": "not an action"})
        changed.append(run)
    if action == "delete":
        delete_runs_rows(session, [run.id for run in changed])
        for run in changed:
            session.expunge(run)
    session.flush()
    return len(changed), skipped


def purgeable(session: Session, finished_before: datetime, limit: int) -> list[int]:
    """Up to `limit` archived runs finished before the time that may be deleted alone."""
    statement = (
        select(Run.id)
        .where(
            Run.archived.is_(True),
            Run.finished_at < finished_before,
            Run.status.in_(list(FINISHED_STATUSES)),
            Run.study_id.is_(None),
        )
        .order_by(Run.finished_at, Run.id)
        .limit(limit)
    )
    return list(session.scalars(statement))
