"""What the study views show: its summary with honest statistics, its run table, the list."""

from __future__ import annotations

from collections import Counter, defaultdict

from sqlalchemy.orm import Session

from shared.domain.errors import NotFound
from shared.domain.stats import describe, verdict, welch
from shared.domain.status import FINISHED_STATUSES, RunStatus
from shared.domain.study_design import config_label
from shared.read.formatting import duration_seconds
from shared.read.models import (
    ComparisonOut,
    Configuration,
    CurvePoint,
    Statistic,
    StudyDetail,
    StudyList,
    StudyOut,
    StudyRun,
    StudyRuns,
)
from shared.read.search import search_view
from shared.store import studies as stored
from shared.store.models import Epoch, Run, Study
from shared.store.queries import epochs_by_run

METRICS = ("test_accuracy", "test_loss")
CURVES = ("loss", "accuracy", "val_loss", "val_accuracy")
TEST = "Welch's unequal-variance t-test (two-sided); intervals at 95%"


def status_of(counts: Counter[str], total: int) -> str:
    """queued, running, finished or cancelled: what the study's runs are doing, as one word."""
    finished = sum(counts[s.value] for s in FINISHED_STATUSES)
    if finished == total:
        return "cancelled" if counts["cancelled"] == total else "finished"
    if counts["queued"] == total:
        return "queued"
    return "running"


def _search_status(study: Study, status: str) -> str:
    """A search is running until its best's test set is read, though its trials may all be
    finished for a moment (between one ending and the next being asked)."""
    if study.search_state in ("searching", "testing") and status == "finished":
        return "running"
    return "cancelled" if study.search_state == "cancelled" and status == "finished" else status


def study_out(study: Study, counts: Counter[str], total: int) -> StudyOut:
    """A study's summary line: what it varies and how far its runs are."""
    return StudyOut(
        id=study.id,
        name=study.name,
        created_at=study.created_at,
        status=_search_status(study, status_of(counts, total)),
        counts={status.value: counts[status.value] for status in RunStatus},
        runs=total,
        base_params=study.base_params,
        design=study.design,
        varied=study.varied,
        configs=len(study.configs),
        replicates=study.replicates,
        first_seed=study.first_seed,
    )


def study_list(session: Session, page: int, limit: int) -> StudyList:
    """One page of studies, newest first, with their runs' counts."""
    studies, total = stored.list_studies(session, limit, (page - 1) * limit)
    rows = [study_out(study, counts, sum(counts.values())) for study, counts in studies]
    return StudyList(studies=rows, total=total, page=page, limit=limit)


def run_table(session: Session, study: Study) -> StudyRuns:
    """The study's runs, one row each: configuration, varied values, seed, status, figures."""
    rows = [
        StudyRun(
            run_id=run.id,
            tags=run.tags or [],
            config=run.config or 0,
            label=config_label(study.configs[run.config or 0]),
            params=study.configs[run.config or 0],
            seed=run.seed,
            status=run.status,
            epochs_done=run.epochs_done,
            test_accuracy=run.test_accuracy,
            test_loss=run.test_loss,
            duration_seconds=duration_seconds(run),
        )
        for run in stored.study_runs(session, study.id)
    ]
    return StudyRuns(study_id=study.id, runs=rows)


def _curves(rows: list[Epoch]) -> dict[str, list[CurvePoint]]:
    """Per epoch, the mean and spread of each curve over the configuration's runs."""
    by_epoch: dict[int, list[Epoch]] = defaultdict(list)
    for row in rows:
        by_epoch[row.epoch].append(row)
    curves: dict[str, list[CurvePoint]] = {}
    for key in CURVES:
        points = []
        for epoch in sorted(by_epoch):
            values = [getattr(row, key) for row in by_epoch[epoch] if getattr(row, key) is not None]
            if values:
                summary = describe(values)
                points.append(
                    CurvePoint(epoch=epoch, mean=summary.mean, std=summary.std, n=summary.n)
                )
        curves[key] = points
    return curves


def summarize(session: Session, study: Study, baseline: int | None = None) -> StudyDetail:
    """The study with, per configuration, its runs, the statistics of its finished runs and its
    mean learning curves, and every configuration compared with the baseline (Welch's t-test)."""
    baseline = 0 if baseline is None else baseline
    if not 0 <= baseline < max(len(study.configs), 1):
        raise NotFound(
            f"baseline is a configuration's index, 0 to {len(study.configs) - 1}",
            {"baseline": "no such configuration"},
        )
    runs = stored.study_runs(session, study.id)
    epochs = epochs_by_run(session, [run.id for run in runs])
    by_config: dict[int, list[Run]] = defaultdict(list)
    for run in runs:
        by_config[run.config or 0].append(run)
    finished: dict[int, dict[str, list[float]]] = {}
    configurations = []
    for index, config in enumerate(study.configs):
        members = by_config[index]
        succeeded = [run for run in members if run.status == RunStatus.SUCCEEDED]
        finished[index] = {
            # A search's trials read no test set: only its chosen best has these figures.
            metric: [getattr(run, metric) for run in succeeded if getattr(run, metric) is not None]
            for metric in METRICS
        }
        statistics = {
            metric: Statistic.model_validate(describe(finished[index][metric]).as_dict())
            for metric in METRICS
        }
        configurations.append(
            Configuration(
                index=index,
                label=config_label(config),
                params=config,
                run_ids=[run.id for run in members],
                runs=len(members),
                n=len(succeeded),
                **statistics,
                curves=_curves([row for run in members for row in epochs[run.id]]),
            )
        )
    comparisons = []
    for index, config in enumerate(study.configs):
        if index == baseline:
            continue
        for metric in METRICS:
            result = welch(finished[index][metric], finished[baseline][metric])
            comparisons.append(
                ComparisonOut(
                    config=index,
                    baseline=baseline,
                    metric=metric,
                    **result.as_dict(),
                    verdict=verdict(
                        config_label(config), metric, result, points=metric == "test_accuracy"
                    ),
                )
            )
    counts = Counter(run.status.value for run in runs)
    return StudyDetail(
        **dict(study_out(study, counts, len(runs))),
        baseline=baseline,
        test=TEST,
        configurations=configurations,
        comparisons=comparisons,
        search=search_view(session, study),
    )
