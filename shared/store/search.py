"""Search studies in the store: create one, ask for trials as slots free, decide after each epoch
whether a trial goes on, end it, choose the best and record its one test evaluation.

Trainyard's rows are the truth: a trial is a run of the study, its reports are its epochs'
validation metric. Every decision locks the study's row first (SELECT ... FOR UPDATE on
PostgreSQL; SQLite serializes writers anyway), reads every trial's reports and asks an Optuna
study rebuilt from them (`shared.domain.search`), so workers on many hosts decide alike and two
decisions never interleave. Writes take a session and never commit; the caller sends the
returned runs' messages after the commit (and the sweeps send any message that got lost).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.domain.lease import EpochRecord, Lease
from shared.domain.params import Hyperparams
from shared.domain.search import (
    SearchSpec,
    TrialRecord,
    TrialStatus,
    best,
    next_params,
    should_prune,
)
from shared.domain.status import RunStatus
from shared.domain.study_design import config_label, run_params
from shared.store.clock import db_now, now_of
from shared.store.engine import rows_changed
from shared.store.lease import finish, record_epoch
from shared.store.models import Epoch, Evaluation, Run, Study, TrainedModel, Worker
from shared.store.runs import create_run

logger = logging.getLogger(__name__)

SEARCHING, TESTING, DONE, CANCELLED = "searching", "testing", "done", "cancelled"
# A worker that took the best's test evaluation on and went quiet this long is presumed lost.
TEST_CLAIM_SECONDS = 120.0

_TRIAL_STATUS: dict[RunStatus, TrialStatus] = {
    RunStatus.QUEUED: "running",
    RunStatus.RUNNING: "running",
    RunStatus.SUCCEEDED: "complete",
    RunStatus.PRUNED: "pruned",
    RunStatus.FAILED: "failed",
    RunStatus.CANCELLED: "failed",
}


@dataclass
class Decision:
    """What the store decided after a trial's epoch or end: whether it stops (pruned), the runs
    whose messages to send after the commit, and the study whose best awaits its test reading."""

    pruned: bool = False
    send: list[tuple[int, str]] = field(default_factory=list)
    test_study: int | None = None
    test_run: int | None = None  # a sweep's: the best run to send a message for


def spec_of(study: Study) -> SearchSpec | None:
    return SearchSpec.model_validate(study.search) if study.search is not None else None


def create_search(
    session: Session,
    name: str | None,
    base: dict[str, Any],
    spec: SearchSpec,
    first_seed: int,
    queue: str,
) -> tuple[Study, list[Run]]:
    """Add a search study and its first trials (one per slot); flushed, not committed."""
    names = list(spec.space)
    study = Study(
        name=(name or "").strip() or f"search of {', '.join(names)}",
        created_at=now_of(session),
        base_params={key: value for key, value in base.items() if key != "seed"},
        design={"search": spec.model_dump()},
        varied=names,
        configs=[],
        first_seed=first_seed,
        replicates=1,
        search=spec.model_dump(),
        search_state=SEARCHING,
    )
    session.add(study)
    session.flush()
    return study, top_up(session, study, spec, queue)


def lock_study(session: Session, study_id: int) -> Study | None:
    """The study's row, locked until the transaction ends (the search's decisions serialize)."""
    if session.get_bind().dialect.name == "sqlite":
        # SQLite has no row locks: a write takes the database's, so a sweep that has only read
        # so far cannot decide alongside a worker from the same stale reads.
        session.execute(update(Study).where(Study.id == study_id).values(id=Study.id))
    statement = select(Study).where(Study.id == study_id).with_for_update()
    return session.scalars(statement.execution_options(populate_existing=True)).one_or_none()


def trials(session: Session, study: Study) -> tuple[list[Run], list[TrialRecord]]:
    """The study's trials (runs in the order asked) and their records for Optuna."""
    runs = list(
        session.scalars(
            select(Run)
            .where(Run.study_id == study.id, Run.seed == study.first_seed)
            .order_by(Run.config, Run.id)
        )
    )
    spec = spec_of(study)
    metric = spec.metric if spec else "val_accuracy"
    reports: dict[int, dict[int, float]] = {run.id: {} for run in runs}
    if runs:
        rows = session.execute(
            select(Epoch.run_id, Epoch.epoch, getattr(Epoch, metric)).where(
                Epoch.run_id.in_(list(reports))
            )
        )
        for run_id, epoch, value in rows:
            if value is not None:
                reports[run_id][epoch] = float(value)
    records = [
        TrialRecord(
            run.config or 0,
            study.configs[run.config or 0],
            _TRIAL_STATUS[run.status],
            reports[run.id],
        )
        for run in runs
    ]
    return runs, records


def live_workers(session: Session) -> int:
    """Pool processes of the workers whose heartbeat is recent (the slots a search may fill)."""
    total = session.scalar(
        select(func.sum(Worker.concurrency)).where(
            Worker.stopped_at.is_(None), Worker.heartbeat_at > db_now(-60)
        )
    )
    return int(total or 0)


def top_up(session: Session, study: Study, spec: SearchSpec, queue: str) -> list[Run]:
    """Ask Optuna for a configuration per free slot and add each as a queued trial (the study's
    row must be locked); when every trial has ended, choose the best. Flushed, not committed."""
    if study.search_state != SEARCHING:
        return []
    runs, records = trials(session, study)
    slots = spec.parallel or max(live_workers(session), 1)
    live = sum(1 for run in runs if not run.status.finished)
    added: list[Run] = []
    while len(records) < spec.trials and live < slots:
        params = next_params(spec, records)
        index = len(study.configs)
        study.configs = [*study.configs, params]
        hyper = _trial_params(study, params)
        run = create_run(
            session,
            hyper,
            f"{study.name}: trial {index}, {config_label(params)}"[:200],
            queue=queue,
        )
        run.study_id, run.config = study.id, index
        records.append(TrialRecord(index, params, "running"))
        added.append(run)
        live += 1
    session.flush()
    if live == 0 and len(records) >= spec.trials:
        chosen = best(spec, records)
        study.best_run_id = next(
            (run.id for run in runs if chosen is not None and run.config == chosen.number), None
        )
        study.search_state = TESTING if study.best_run_id is not None else DONE
        logger.info("search %s: every trial ended; best run %s", study.id, study.best_run_id)
    return added


def _trial_params(study: Study, params: dict[str, Any]) -> Hyperparams:
    return run_params(study.base_params, params, study.first_seed)


def _decide_after(session: Session, study_id: int, decision: Decision) -> Decision:
    study = lock_study(session, study_id)
    spec = spec_of(study) if study is not None else None
    if study is None or spec is None:
        return decision
    queue = session.scalar(select(Run.queue).where(Run.study_id == study_id).limit(1)) or "training"
    decision.send += [(run.id, run.queue) for run in top_up(session, study, spec, queue)]
    if study.search_state == TESTING:
        decision.test_study = study.id
    return decision


def study_of(session: Session, run_id: int) -> int | None:
    """The search study a run is a trial of, if any. A trial trains with the study's seed; a
    run of other seeds is one of the chosen configuration's confirmations, an ordinary run."""
    return session.scalar(
        select(Study.id)
        .join(Run, Run.study_id == Study.id)
        .where(Run.id == run_id, Study.search.is_not(None), Run.seed == Study.first_seed)
    )


def report_epoch(
    session: Session,
    lease: Lease,
    record: EpochRecord,
    checkpoint: bytes | None,
    last_epoch: int,
) -> Decision:
    """Record a trial's epoch and, in the same transaction, decide whether it goes on; a pruned
    trial ends `pruned` here (its epochs kept) and its slot goes to a new trial. Raises
    LeaseLost or CancelRequested like `record_epoch`."""
    record_epoch(session, lease, record, checkpoint)
    study_id = study_of(session, lease.run_id)
    if study_id is None or record.epoch >= last_epoch:
        return Decision()
    study = lock_study(session, study_id)
    spec = spec_of(study) if study is not None else None
    if study is None or spec is None:
        return Decision()
    _, records = trials(session, study)
    number = session.scalar(select(Run.config).where(Run.id == lease.run_id)) or 0
    if not should_prune(spec, records, number, record.epoch):
        return Decision()
    finish(session, lease, RunStatus.PRUNED)
    logger.info("run %s pruned after epoch %d", lease.run_id, record.epoch)
    return _decide_after(session, study_id, Decision(pruned=True))


def finish_trial(session: Session, lease: Lease, keras_file: bytes) -> Decision:
    """End a trial that trained every epoch: succeeded, its model kept, its test set unread."""
    finish(session, lease, RunStatus.SUCCEEDED, keras_file=keras_file)
    study_id = study_of(session, lease.run_id)
    return _decide_after(session, study_id, Decision()) if study_id else Decision()


def after_end(session: Session, run_id: int) -> Decision:
    """After a trial ended any other way (failed, cancelled): fill its slot."""
    study_id = study_of(session, run_id)
    return _decide_after(session, study_id, Decision()) if study_id else Decision()


def open_searches(session: Session) -> list[int]:
    """Searches that may still need a trial or the best's test reading."""
    return list(
        session.scalars(select(Study.id).where(Study.search_state.in_([SEARCHING, TESTING])))
    )


def sweep_search(session: Session, study_id: int) -> Decision:
    """What a node's sweep does for an open search: fill free slots (a trial that failed with its
    worker lost), and offer the best's test reading when no worker has it."""
    decision = _decide_after(session, study_id, Decision())
    if decision.test_study is not None:
        decision.test_run = claim_test(session, study_id, dry=True)
    return decision


def claim_test(session: Session, study_id: int, dry: bool = False) -> int | None:
    """Take on the best's test evaluation: the best run's id, or None when it is not due or
    another worker took it on recently."""
    # Stale by the database's clock, in the statement that acts on it.
    condition = (
        (Study.id == study_id)
        & (Study.search_state == TESTING)
        & (Study.test_claimed_at.is_(None) | (Study.test_claimed_at < db_now(-TEST_CLAIM_SECONDS)))
    )
    if dry:
        return session.scalar(select(Study.best_run_id).where(condition))
    claimed = session.execute(update(Study).where(condition).values(test_claimed_at=db_now()))
    if rows_changed(claimed) != 1:
        return None
    return session.scalar(select(Study.best_run_id).where(Study.id == study_id))


def due_test(session: Session, run_id: int) -> int | None:
    """The search whose chosen best is `run_id` and still awaits its test reading."""
    return session.scalar(
        select(Study.id).where(Study.best_run_id == run_id, Study.search_state == TESTING)
    )


def best_model(session: Session, run_id: int) -> bytes | None:
    return session.scalar(select(TrainedModel.keras_file).where(TrainedModel.run_id == run_id))


def record_test(
    session: Session,
    study_id: int,
    run_id: int,
    loss: float,
    accuracy: float,
    evaluation: dict[str, Any],
) -> list[Run] | None:
    """Store the best's one test evaluation and close the search; None if it was already read.
    Returns the confirmations to send (`confirm_seeds` runs of the chosen configuration with
    new seeds, ordinary runs with their own test evaluation), queued here, flushed."""
    done = session.execute(
        update(Study)
        .where(Study.id == study_id, Study.search_state == TESTING, Study.best_run_id == run_id)
        .values(search_state=DONE)
    )
    if rows_changed(done) != 1:
        return None
    session.execute(
        update(Run).where(Run.id == run_id).values(test_loss=loss, test_accuracy=accuracy)
    )
    session.merge(Evaluation(run_id=run_id, **evaluation))
    study = session.get(Study, study_id)
    best = session.get(Run, run_id)
    spec = spec_of(study) if study is not None else None
    if study is None or best is None or spec is None or not spec.confirm_seeds:
        return []
    config = study.configs[best.config or 0]
    confirmations = []
    for k in range(1, spec.confirm_seeds + 1):
        params = run_params(study.base_params, config, study.first_seed + k)
        name = f"{study.name}: trial {best.config} confirmed, seed {params.seed}"
        run = create_run(session, params, name[:200], queue=best.queue)
        run.study_id, run.config = study.id, best.config
        confirmations.append(run)
    study.replicates = 1 + spec.confirm_seeds
    session.flush()
    return confirmations
