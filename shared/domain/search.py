"""A search study: the space it searches, how many trials, which sampler and pruner; and the
decisions Optuna makes from the trials' stored reports (prune this trial? which configuration
next? which is best? what mattered?).

Optuna keeps no state of its own here: each decision rebuilds an in-memory Optuna study from
plain records of every trial (its configuration, state and per-epoch validation metric), so any
process on any host that reads the same stored reports decides the same thing. Pure: no I/O.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.domain.errors import InvalidParams, field_errors, summary
from shared.domain.params import INT32_MAX, Hyperparams

optuna.logging.set_verbosity(optuna.logging.WARNING)

# What a search may vary. The epochs are its budget, the split and sample count its data.
SEARCHABLE = ("learning_rate", "batch_size", "hidden_units", "dropout", "optimizer", "normalize")
INTEGERS = {"batch_size", "hidden_units"}
CATEGORICAL = {"optimizer", "normalize"}
Sampler = Literal["tpe", "random"]
Pruner = Literal["asha", "median", "none"]
Metric = Literal["val_accuracy", "val_loss"]
# ASHA's rungs: a trial is compared with its peers after 1, 4, 16, ... epochs, and goes on only
# if it is in the best quarter of those that reached the rung (or is the best of fewer than 4).
# A factor of 3 (rungs 1, 3, 9) spent 0.43 of a full random search's epochs in bench.search
# (5 seeds, 16 trials x 9 epochs), 4 spent 0.34-0.37 and came as close to its best: an
# asynchronous rung promotes early, unopposed trials, so its budget needs the stricter cut.
REDUCTION_FACTOR = 4


class Range(BaseModel):
    """A number drawn from [low, high], log-uniformly with `log`."""

    model_config = ConfigDict(extra="forbid")

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.low < self.high:
            raise ValueError(f"an empty or inverted range: low {self.low:g} >= high {self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class Choice(BaseModel):
    """One of a few values."""

    model_config = ConfigDict(extra="forbid")

    choices: list[Any] = Field(min_length=1, max_length=20)


class SearchSpec(BaseModel):
    """`search` of POST /api/studies: what to search and how."""

    model_config = ConfigDict(extra="forbid")

    space: dict[str, Range | Choice] = Field(
        min_length=1,
        description=f"Per hyperparameter ({', '.join(SEARCHABLE)}): "
        '`{"low", "high", "log"}` or `{"choices": [...]}`.',
    )
    trials: int = Field(24, ge=1, le=1000, description="How many configurations to try.")
    sampler: Sampler = Field("tpe", description="How the next configuration is chosen.")
    pruner: Pruner = Field("asha", description="How weak trials are stopped early.")
    metric: Metric = Field("val_accuracy", description="What is optimized, on validation data.")
    seed: int = Field(1, ge=0, le=INT32_MAX, description="The sampler's seed.")
    parallel: int | None = Field(
        None, ge=1, le=64, description="Trials in flight at once (default: every free worker)."
    )
    confirm_seeds: int = Field(
        0,
        ge=0,
        le=20,
        description="Once chosen, train the best configuration again with this many new seeds "
        "(ordinary runs, each tested), shown with the study's statistics.",
    )

    @field_validator("space", mode="before")
    @classmethod
    def _space(cls, space: Any) -> Any:
        # Each axis parsed here, so a 422 says which hyperparameter is wrong and why.
        if not isinstance(space, dict):
            return space
        parsed: dict[str, Range | Choice] = {}
        for name, raw in space.items():
            try:
                axis: Range | Choice = (
                    Choice.model_validate(raw)
                    if isinstance(raw, dict) and "choices" in raw
                    else Range.model_validate(raw)
                )
                check_axis(name, axis)
            except ValidationError as exc:
                reasons = {k: v for k, v in field_errors(exc).items()}
                reason = reasons.pop("body", None) or summary(reasons)
                raise ValueError(f"{name}: {reason}") from None
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
            parsed[name] = axis
        return parsed

    @property
    def maximize(self) -> bool:
        return self.metric == "val_accuracy"


def check_axis(name: str, axis: Range | Choice) -> None:
    """Raise ValueError unless `axis` is a valid way to vary hyperparameter `name`."""
    if name not in SEARCHABLE:
        raise ValueError(f"not a hyperparameter a search can vary (one of {', '.join(SEARCHABLE)})")
    if isinstance(axis, Range):
        if name in CATEGORICAL:
            raise ValueError("give its choices, not a range")
        if name in INTEGERS and math.ceil(axis.low) > math.floor(axis.high):
            raise ValueError("the range holds no whole number")
        values: list[Any] = [axis.low, axis.high]
        values = [int(v) if name in INTEGERS and float(v).is_integer() else v for v in values]
    else:
        values = axis.choices
        if len({repr(v) for v in values}) != len(values):
            raise ValueError("the choices repeat")
    for value in values:
        try:
            Hyperparams.model_validate({name: value}, strict=True)
        except ValidationError as exc:
            raise ValueError(f"{value!r} is not allowed: {field_errors(exc)[name]}") from None


def distributions(spec: SearchSpec) -> dict[str, BaseDistribution]:
    """The space as Optuna's distributions, in a fixed order."""
    out: dict[str, BaseDistribution] = {}
    for name in SEARCHABLE:
        axis = spec.space.get(name)
        if isinstance(axis, Choice):
            out[name] = CategoricalDistribution(axis.choices)
        elif isinstance(axis, Range) and name in INTEGERS:
            out[name] = IntDistribution(math.ceil(axis.low), math.floor(axis.high), log=axis.log)
        elif isinstance(axis, Range):
            out[name] = FloatDistribution(axis.low, axis.high, log=axis.log)
    return out


def check_request(spec: SearchSpec, base: dict[str, Any], max_runs: int) -> None:
    """422 unless the base hyperparameters fit a search within the study limit."""
    if not base.get("validation_split"):
        raise InvalidParams(
            "a search is decided on validation data: give params.validation_split > 0",
            {"params.validation_split": "must be > 0 for a search"},
        )
    if spec.trials + spec.confirm_seeds > max_runs:
        raise InvalidParams(
            f"a search of {spec.trials} trials and {spec.confirm_seeds} confirmations is over "
            f"the limit of {max_runs} runs a study may have (TRAINYARD_MAX_STUDY_RUNS)",
            {"search.trials": f"at most {max_runs} with the confirmations"},
        )


def space_corners(spec: SearchSpec) -> list[dict[str, Any]]:
    """The most costly and the least costly configuration of the space (each range's ends,
    the first choice), to check that every trial is a run the cluster accepts."""
    low: dict[str, Any] = {}
    high: dict[str, Any] = {}
    for name, dist in distributions(spec).items():
        if isinstance(dist, CategoricalDistribution):
            low[name] = high[name] = dist.choices[0]
        else:
            low[name], high[name] = dist.low, dist.high  # type: ignore[attr-defined]
    return [low, high]


TrialStatus = Literal["running", "complete", "pruned", "failed"]


@dataclass(frozen=True)
class TrialRecord:
    """One trial as stored: its number (order of asking), configuration, where it is, and its
    validation metric by epoch (every attempt's reports)."""

    number: int
    params: dict[str, Any]
    status: TrialStatus
    reports: dict[int, float] = field(default_factory=dict)

    @property
    def last(self) -> float | None:
        return self.reports[max(self.reports)] if self.reports else None


_STATES = {
    "running": TrialState.RUNNING,
    "complete": TrialState.COMPLETE,
    "pruned": TrialState.PRUNED,
    "failed": TrialState.FAIL,
}


def _sampler(spec: SearchSpec, asked: int) -> optuna.samplers.BaseSampler:
    # Seeded by how many were asked: the same stored trials give the same next configuration.
    # (Not seed + asked: searches with seeds 1 and 2 would then share all but one draw.)
    seed = (spec.seed * 1_000_003 + asked) % (INT32_MAX + 1)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    startup = max(2, min(10, spec.trials // 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=startup, constant_liar=True, multivariate=True
        )


def _pruner(spec: SearchSpec) -> optuna.pruners.BasePruner:
    if spec.pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=1, reduction_factor=REDUCTION_FACTOR, min_early_stopping_rate=0
        )
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    return optuna.pruners.NopPruner()


def _rungs(reports: dict[int, float], below: int) -> dict[str, float]:
    """ASHA's bookkeeping, rebuilt: the value at each rung's epoch the trial reached (before
    epoch `below`). Optuna would have written these as the trial passed each rung."""
    attrs, rung = {}, 0
    while (step := REDUCTION_FACTOR**rung) < below:
        if step in reports:
            attrs[f"completed_rung_{rung}"] = reports[step]
        rung += 1
    return attrs


def _frozen(
    spec: SearchSpec, dists: dict[str, BaseDistribution], record: TrialRecord, below: int
) -> FrozenTrial:
    status = record.status
    value = record.last if status == "complete" else None
    if status == "complete" and value is None:
        status = "failed"
    return optuna.trial.create_trial(
        state=_STATES[status],
        value=value,
        params={name: record.params[name] for name in dists if name in record.params},
        distributions={name: dists[name] for name in dists if name in record.params},
        intermediate_values=dict(record.reports),
        system_attrs=_rungs(record.reports, below),
    )


def rebuild(spec: SearchSpec, records: list[TrialRecord], asked: int = 0) -> optuna.Study:
    """An in-memory Optuna study holding every stored trial, in the order they were asked."""
    dists = distributions(spec)
    study = optuna.create_study(
        direction="maximize" if spec.maximize else "minimize",
        sampler=_sampler(spec, asked),
        pruner=_pruner(spec),
    )
    for record in sorted(records, key=lambda r: r.number):
        study.add_trial(_frozen(spec, dists, record, below=max(record.reports, default=0) + 1))
    return study


def should_prune(spec: SearchSpec, records: list[TrialRecord], number: int, epoch: int) -> bool:
    """Whether trial `number`, which just reported `epoch`, is to stop, judged against every
    other trial's reports as stored. Never after the last epoch: then the trial is complete."""
    if spec.pruner == "none":
        return False
    others = [r for r in records if r.number != number]
    this = next(r for r in records if r.number == number)
    study = rebuild(spec, others)
    dists = distributions(spec)
    trial = _frozen(spec, dists, TrialRecord(number, this.params, "running", this.reports), epoch)
    study.add_trial(trial)
    frozen = study.get_trials(deepcopy=False)[-1]
    if math.isnan(frozen.intermediate_values.get(epoch, math.nan)):
        return True
    return bool(study.pruner.prune(study, frozen))


def next_params(spec: SearchSpec, records: list[TrialRecord]) -> dict[str, Any]:
    """The next configuration to try, given every trial asked so far (running ones included)."""
    study = rebuild(spec, records, asked=len(records))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        trial = study.ask(distributions(spec))
    return dict(trial.params)


def best(spec: SearchSpec, records: list[TrialRecord]) -> TrialRecord | None:
    """The complete trial with the best final validation metric (ties: the earlier trial)."""
    complete = [r for r in records if r.status == "complete" and r.last is not None]
    if not complete:
        return None
    sign = -1.0 if spec.maximize else 1.0
    return min(complete, key=lambda r: (sign * (r.last or 0.0), r.number))


def importance(spec: SearchSpec, records: list[TrialRecord]) -> dict[str, float]:
    """How much each hyperparameter mattered to the final metric (Optuna's PED-ANOVA over the
    complete trials, normalized to sum to 1); empty below 3 complete trials or with one axis."""
    complete = [r for r in records if r.status == "complete" and r.last is not None]
    varied = [name for name in distributions(spec) if not distributions(spec)[name].single()]
    if len(complete) < 3 or not varied:
        return {}
    study = rebuild(spec, complete)
    with warnings.catch_warnings():
        # PED-ANOVA is Optuna's evaluator that needs no scikit-learn (fANOVA and mean decrease
        # in impurity fit its random forests); it is marked experimental.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        scores = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return {name: round(float(score), 4) for name, score in scores.items()}
