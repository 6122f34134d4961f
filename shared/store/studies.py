"""Studies in the store: create one with its runs, add replicates, cancel it, and the reads its
summary needs.

Writes take a session and never commit; the caller commits, then sends the runs' messages.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.domain.errors import NotFound
from shared.domain.params import Hyperparams
from shared.domain.status import RunStatus
from shared.domain.study_design import config_label, run_params
from shared.store.clock import now_of
from shared.store.models import Run, Study
from shared.store.runs import create_run, request_cancel


def get_study(session: Session, study_id: int) -> Study:
    """Return the study or raise NotFound."""
    study = session.get(Study, study_id)
    if study is None:
        raise NotFound(f"study {study_id} does not exist", {"id": "no such study"})
    return study


def create_study(
    session: Session,
    name: str | None,
    base: dict[str, Any],
    design: dict[str, Any],
    varied: list[str],
    configs: list[dict[str, Any]],
    runs: list[tuple[int, Hyperparams]],
    first_seed: int,
    replicates: int,
    queue: str,
) -> tuple[Study, list[Run]]:
    """Add a study and its queued runs (flushed so they have ids, not committed)."""
    study = Study(
        name=(name or "").strip() or f"study of {', '.join(varied) or 'seeds'}",
        created_at=now_of(session),  # read back at once, for the answer
        base_params={key: value for key, value in base.items() if key != "seed"},
        design=design,
        varied=varied,
        configs=configs,
        first_seed=first_seed,
        replicates=replicates,
    )
    session.add(study)
    session.flush()
    return study, _add_runs(session, study, runs, queue)


def _add_runs(
    session: Session, study: Study, runs: list[tuple[int, Hyperparams]], queue: str
) -> list[Run]:
    added = []
    for config, params in runs:
        label = config_label(study.configs[config])
        run = create_run(
            session, params, f"{study.name}: {label}, seed {params.seed}"[:200], queue=queue
        )
        run.study_id, run.config = study.id, config
        added.append(run)
    session.flush()
    return added


def replicate_params(study: Study, seeds: int) -> list[tuple[int, Hyperparams]]:
    """The runs `seeds` more replicates of every configuration would add."""
    first = study.first_seed + study.replicates
    return [
        (index, run_params(study.base_params, config, first + k))
        for index, config in enumerate(study.configs)
        for k in range(seeds)
    ]


def add_replicates(
    session: Session, study: Study, runs: list[tuple[int, Hyperparams]], seeds: int, queue: str
) -> list[Run]:
    """Add replicates to a study (from `replicate_params`); flushed, not committed."""
    study.replicates += seeds
    return _add_runs(session, study, runs, queue)


def cancel_study(session: Session, study: Study) -> int:
    """Cancel every run of the study that has not finished; return how many."""
    unfinished = [run for run in study_runs(session, study.id) if not run.status.finished]
    for run in unfinished:
        request_cancel(session, run.id)
    if study.search_state == "searching":
        # A search asks for no new trial. Written after the runs (a trial's epoch locks its run,
        # then the study: the same order); a trial asked meanwhile is cancelled too.
        study.search_state = "cancelled"
        session.flush()
        for run in study_runs(session, study.id):
            if run.id not in {r.id for r in unfinished} and not run.status.finished:
                request_cancel(session, run.id)
                unfinished.append(run)
    return len(unfinished)


def study_runs(session: Session, study_id: int) -> list[Run]:
    statement = select(Run).where(Run.study_id == study_id).order_by(Run.config, Run.seed, Run.id)
    return list(session.scalars(statement))


def list_studies(
    session: Session, limit: int = 50, offset: int = 0
) -> tuple[list[tuple[Study, Counter[str]]], int]:
    """Studies, newest first, each with its runs counted by status; and how many there are."""
    total = session.scalar(select(func.count(Study.id))) or 0
    studies = list(
        session.scalars(select(Study).order_by(Study.id.desc()).offset(offset).limit(limit))
    )
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    if studies:
        rows = session.execute(
            select(Run.study_id, Run.status, func.count())
            .where(Run.study_id.in_([study.id for study in studies]))
            .group_by(Run.study_id, Run.status)
        )
        for study_id, status, count in rows:
            assert study_id is not None  # the query asked for these studies' runs
            counts[study_id][status.value if isinstance(status, RunStatus) else status] = count
    return [(study, counts[study.id]) for study in studies], total
