"""The API's response models: what each view answers, as the OpenAPI document describes it.

The serializers in `shared.read` build these, the API answers their `model_dump(mode="json")` and
the document is generated from them: a field cannot differ between an answer and the document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.domain.params import Hyperparams
from shared.domain.status import RunStatus


class Reproducibility(BaseModel):
    """What it takes to run it again: the seed and the versions and data it trained with."""

    seed: int
    tensorflow: str | None
    keras: str | None
    python: str | None
    dataset_sha256: str | None


class LostAttempt(BaseModel):
    """An attempt whose worker was lost: the run went back to the queue (or failed, the last)."""

    attempt: int
    worker: str | None
    reason: str
    at: datetime


class RunOut(BaseModel):
    """A run's summary, as the list answers it."""

    id: int
    name: str
    tags: list[str] = Field(description="Its labels, in the order they were given.")
    note: str | None = Field(description="Plain-text note people wrote on it.")
    archived: bool = Field(description="Archived runs leave the default lists.")
    status: RunStatus
    params: Hyperparams
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None = Field(description="From start to finish, once finished.")
    worker: str | None = Field(description="Celery node that ran (or runs) it.")
    task_id: str | None
    attempt: int = Field(description="How many times a worker claimed it.")
    heartbeat_at: datetime | None
    cancel_requested: bool
    epochs_done: int
    epochs_total: int
    latest_loss: float | None
    latest_accuracy: float | None
    seconds_left: float | None = Field(description="Estimate while running.")
    queue_position: int | None = Field(description="1-based place while queued.")
    test_loss: float | None
    test_accuracy: float | None
    error: str | None
    lost_attempts: list[LostAttempt] = Field(description="Attempts whose worker was lost.")
    study_id: int | None = Field(description="The study it is a replicate of, if any.")
    config: int | None = Field(description="Which of its study's configurations it trains.")
    reproducibility: Reproducibility


class Misclassified(BaseModel):
    """A test digit the model got wrong."""

    index: int = Field(description="Index in the 10,000 test images.")
    label: int
    predicted: int
    image: str = Field(description="Base64 of the 28x28 uint8 pixels, row by row.")


class EvaluationOut(BaseModel):
    """A finished run's evaluation on the test images."""

    confusion_matrix: list[list[int]] = Field(description="confusion_matrix[true][predicted].")
    per_class_accuracy: list[float | None]
    misclassified: list[Misclassified]


class RunDetail(RunOut):
    """Everything known about one run."""

    evaluation: EvaluationOut | None = Field(description="Present once the run succeeded.")
    model_url: str | None = Field(
        description="Where to download the trained model (`.keras`) once the run succeeded."
    )


class RunList(BaseModel):
    """One page of runs and how many match in all."""

    runs: list[RunOut]
    total: int = Field(description="How many match: exact when `total_relation` is `eq`.")
    total_relation: Literal["eq", "gte", "about"] = Field(
        description="`eq`: `total` is exact; `gte`: at least `total` (counting stops there); "
        "`about`: the database's estimate."
    )
    page: int
    limit: int
    pages: int = Field(description="Pages of `limit` runs in `total`.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` (same filters and sort) for the next page; null on the last."
    )


class EpochOut(BaseModel):
    """One epoch's metrics."""

    epoch: int
    loss: float
    accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    seconds: float
    recorded_at: datetime
    attempt: int = Field(description="The attempt that computed it (a resumed run redoes one).")


class MetricsOut(BaseModel):
    """A run's per-epoch series."""

    run_id: int
    epochs: list[EpochOut]


class Delta(BaseModel):
    """Difference from the baseline run."""

    test_accuracy: float | None
    test_loss: float | None


class CompareRun(RunOut):
    """A compared run: its summary, best epoch, deltas and per-class accuracy."""

    best_epoch: int | None
    training_seconds: float | None
    delta: Delta
    per_class_accuracy: list[float | None] | None


class CompareOut(BaseModel):
    """Runs side by side: the differing hyperparameters, final figures and per-epoch series."""

    ids: list[int]
    baseline: int
    differing_params: list[str]
    runs: list[CompareRun]
    epochs: dict[str, list[EpochOut]] = Field(description="Per-epoch series keyed by run id.")


class QueuedRun(RunOut):
    """A queued run with its place in the queue."""

    position: int


class QueueOut(BaseModel):
    """Queued runs, oldest (next to run) first."""

    runs: list[QueuedRun]
    total: int


class WorkerOut(BaseModel):
    """A registered worker and the runs it holds."""

    name: str
    hostname: str
    pid: int
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    alive: bool
    running: list[int]


class WorkersOut(BaseModel):
    """Registered workers."""

    workers: list[WorkerOut]


class Check(BaseModel):
    """One health check."""

    ok: bool
    detail: str


class HealthOut(BaseModel):
    """Whether the database and broker answer and the schema is at the latest revision."""

    ok: bool
    checks: dict[str, Check]


class ErrorBody(BaseModel):
    """What went wrong, and for which fields."""

    code: str
    message: str
    fields: dict[str, str]


class ErrorOut(BaseModel):
    """Every error answers with this shape."""

    error: ErrorBody


# Studies.


class Statistic(BaseModel):
    """A metric over a configuration's succeeded runs."""

    n: int
    mean: float | None
    std: float | None = Field(description="Sample standard deviation (n - 1).")
    ci95: list[float] | None = Field(description="95% interval of the mean (Student's t).")


class CurvePoint(BaseModel):
    """One epoch of a mean learning curve."""

    epoch: int
    mean: float
    std: float | None
    n: int


class Configuration(BaseModel):
    """One configuration of a study: its varied values, runs and figures."""

    index: int
    label: str
    params: dict[str, Any] = Field(description="The varied hyperparameters' values.")
    run_ids: list[int]
    runs: int
    n: int = Field(description="Succeeded runs: the statistics are theirs.")
    test_accuracy: Statistic
    test_loss: Statistic
    curves: dict[str, list[CurvePoint]] = Field(
        description="Per curve (loss, accuracy, val_loss, val_accuracy): mean and spread by epoch."
    )


class ComparisonOut(BaseModel):
    """A configuration against the baseline, by Welch's unequal-variance t-test."""

    config: int
    baseline: int
    metric: Literal["test_accuracy", "test_loss"]
    difference: float | None = Field(description="mean(config) - mean(baseline).")
    ci95: list[float] | None = Field(description="95% interval of the difference (Welch).")
    p_value: float | None
    n: int
    n_baseline: int
    verdict: str = Field(description="The comparison in plain words.")


class StudyOut(BaseModel):
    """A study's summary line."""

    id: int
    name: str
    created_at: datetime
    status: Literal["queued", "running", "finished", "cancelled"]
    counts: dict[str, int] = Field(description="Its runs by status.")
    runs: int
    base_params: dict[str, Any]
    design: dict[str, Any] = Field(description="The grid or sample that made its configurations.")
    varied: list[str]
    configs: int
    replicates: int = Field(description="Seeds per configuration.")
    first_seed: int


class BestTrial(BaseModel):
    """A search's best trial, chosen by its final metric on validation data only."""

    run_id: int
    trial: int
    params: dict[str, Any]
    metric: str
    value: float = Field(description="Its final validation metric, what it was chosen by.")
    val_accuracy: float | None
    test_accuracy: float | None = Field(
        description="Read once, after every trial ended, for the chosen trial only."
    )
    final: bool = Field(description="Every trial ended: this is the search's answer.")


class TrialOut(BaseModel):
    """One trial of a search: its configuration and validation metric by epoch."""

    trial: int
    run_id: int
    params: dict[str, Any]
    status: RunStatus
    epochs_done: int
    reports: list[float] = Field(description="The validation metric after each epoch.")
    value: float | None = Field(description="The last of them.")


class SearchCurvePoint(BaseModel):
    """The best final validation metric of the trials complete so far, after `epochs` epochs
    trained by all trials together."""

    epochs: int
    best: float


class SearchOut(BaseModel):
    """What a search adds to its study."""

    spec: dict[str, Any] = Field(description="The search as submitted (with its defaults).")
    state: Literal["searching", "testing", "done", "cancelled"]
    best: BestTrial | None
    epochs_trained: int = Field(description="Epochs trained by all trials together.")
    trials: dict[str, int] = Field(description="Its trials by status.")
    trial_list: list[TrialOut]
    curve: list[SearchCurvePoint]
    importance: dict[str, float] = Field(
        description="Each hyperparameter's importance to the final metric (Optuna's PED-ANOVA "
        "evaluator, summing to 1); empty below 3 complete trials."
    )


class StudyDetail(StudyOut):
    """A study, its configurations' statistics and the comparisons with the baseline."""

    baseline: int
    test: str
    configurations: list[Configuration]
    comparisons: list[ComparisonOut]
    search: SearchOut | None = Field(None, description="For a search study.")


class StudyList(BaseModel):
    """One page of studies, newest first."""

    studies: list[StudyOut]
    total: int
    page: int
    limit: int


class StudyRun(BaseModel):
    """One run of a study, as its per-run table shows it."""

    run_id: int
    tags: list[str]
    config: int
    label: str
    params: dict[str, Any]
    seed: int
    status: RunStatus
    epochs_done: int
    test_accuracy: float | None
    test_loss: float | None
    duration_seconds: float | None


class StudyRuns(BaseModel):
    """A study's runs, one row each."""

    study_id: int
    runs: list[StudyRun]
