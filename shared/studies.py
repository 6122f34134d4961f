"""Studies in the store: create one with its runs, add replicates, and summarize it honestly.

Writes take a session and never commit; the caller commits, then sends the runs' messages.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.domain.errors import NotFound
from shared.domain.params import Hyperparams
from shared.domain.stats import describe, verdict, welch
from shared.domain.status import FINISHED_STATUSES, RunStatus
from shared.domain.study_design import config_label, run_params
from shared.models import Epoch, Run, Study, utcnow
from shared.runs import create_run, request_cancel
from shared.serializers import duration_seconds, iso

METRICS = ("test_accuracy", "test_loss")
CURVES = ("loss", "accuracy", "val_loss", "val_accuracy")


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
        created_at=utcnow(),
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
    return len(unfinished)


def study_runs(session: Session, study_id: int) -> list[Run]:
    statement = select(Run).where(Run.study_id == study_id).order_by(Run.config, Run.seed, Run.id)
    return list(session.scalars(statement))


def run_table(session: Session, study: Study) -> list[dict[str, Any]]:
    """The study's runs, one row each: configuration, varied values, seed, status, figures."""
    return [
        {
            "run_id": run.id,
            "config": run.config or 0,
            "label": config_label(study.configs[run.config or 0]),
            "params": study.configs[run.config or 0],
            "seed": run.seed,
            "status": run.status.value,
            "epochs_done": run.epochs_done,
            "test_accuracy": run.test_accuracy,
            "test_loss": run.test_loss,
            "duration_seconds": duration_seconds(run),
        }
        for run in study_runs(session, study.id)
    ]


def status_of(counts: Counter[str], total: int) -> str:
    """queued, running, finished or cancelled: what the study's runs are doing, as one word."""
    finished = sum(counts[s.value] for s in FINISHED_STATUSES)
    if finished == total:
        return "cancelled" if counts["cancelled"] == total else "finished"
    if counts["queued"] == total:
        return "queued"
    return "running"


def _curves(rows: list[Epoch]) -> dict[str, list[dict[str, Any]]]:
    """Per epoch, the mean and spread of each curve over the configuration's runs."""
    by_epoch: dict[int, list[Epoch]] = defaultdict(list)
    for row in rows:
        by_epoch[row.epoch].append(row)
    curves: dict[str, list[dict[str, Any]]] = {}
    for key in CURVES:
        points = []
        for epoch in sorted(by_epoch):
            values = [getattr(row, key) for row in by_epoch[epoch] if getattr(row, key) is not None]
            if values:
                summary = describe(values)
                points.append(
                    {"epoch": epoch, "mean": summary.mean, "std": summary.std, "n": summary.n}
                )
        curves[key] = points
    return curves


def summarize(session: Session, study: Study, baseline: int | None = None) -> dict[str, Any]:
    """The study with, per configuration, its runs, the statistics of its finished runs and its
    mean learning curves, and every configuration compared with the baseline (Welch's t-test)."""
    baseline = 0 if baseline is None else baseline
    if not 0 <= baseline < len(study.configs):
        raise NotFound(
            f"baseline is a configuration's index, 0 to {len(study.configs) - 1}",
            {"baseline": "no such configuration"},
        )
    runs = study_runs(session, study.id)
    epochs: dict[int, list[Epoch]] = defaultdict(list)
    if runs:
        statement = select(Epoch).where(Epoch.run_id.in_([run.id for run in runs]))
        for row in session.scalars(statement):
            epochs[row.run_id].append(row)
    by_config: dict[int, list[Run]] = defaultdict(list)
    for run in runs:
        by_config[run.config or 0].append(run)
    finished: dict[int, dict[str, list[float]]] = {}
    configurations = []
    for index, config in enumerate(study.configs):
        members = by_config[index]
        succeeded = [run for run in members if run.status == RunStatus.SUCCEEDED]
        finished[index] = {
            metric: [getattr(run, metric) for run in succeeded] for metric in METRICS
        }
        configurations.append(
            {
                "index": index,
                "label": config_label(config),
                "params": config,
                "run_ids": [run.id for run in members],
                "runs": len(members),
                "n": len(succeeded),
                **{metric: describe(finished[index][metric]).as_dict() for metric in METRICS},
                "curves": _curves([row for run in members for row in epochs[run.id]]),
            }
        )
    comparisons = []
    for index, config in enumerate(study.configs):
        if index == baseline:
            continue
        for metric in METRICS:
            result = welch(finished[index][metric], finished[baseline][metric])
            comparisons.append(
                {
                    "config": index,
                    "baseline": baseline,
                    "metric": metric,
                    **result.as_dict(),
                    "verdict": verdict(
                        config_label(config), metric, result, points=metric == "test_accuracy"
                    ),
                }
            )
    counts = Counter(run.status.value for run in runs)
    return {
        **study_to_dict(study, counts, len(runs)),
        "baseline": baseline,
        "test": "Welch's unequal-variance t-test (two-sided); intervals at 95%",
        "configurations": configurations,
        "comparisons": comparisons,
    }


def study_to_dict(study: Study, counts: Counter[str], total: int) -> dict[str, Any]:
    """A study's summary line: what it varies and how far its runs are."""
    return {
        "id": study.id,
        "name": study.name,
        "created_at": iso(study.created_at),
        "status": status_of(counts, total),
        "counts": {status.value: counts[status.value] for status in RunStatus},
        "runs": total,
        "base_params": study.base_params,
        "design": study.design,
        "varied": study.varied,
        "configs": len(study.configs),
        "replicates": study.replicates,
        "first_seed": study.first_seed,
    }


def list_studies(
    session: Session, limit: int = 50, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """Studies, newest first, with their runs' counts; and how many there are."""
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
            counts[study_id][status.value if isinstance(status, RunStatus) else status] = count
    return [study_to_dict(s, counts[s.id], sum(counts[s.id].values())) for s in studies], total
