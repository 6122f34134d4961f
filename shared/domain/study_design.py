"""A study's design: its base hyperparameters, a grid or a random sample of the varied ones, and
seed replicates; expanded into the runs it submits, each checked like any run."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.domain.errors import InvalidParams, field_errors
from shared.domain.params import INT32_MAX, PARAM_NAMES, Hyperparams, Name
from shared.domain.search import SearchSpec

# Hyperparameters a design may vary: all but the seed, which is the replicate axis.
VARIABLE = tuple(name for name in PARAM_NAMES if name != "seed")
INTEGERS = {"epochs", "batch_size", "hidden_units", "train_samples"}
CHOICES = {"optimizer", "normalize"}
# Sampled on a log scale: a learning rate's order of magnitude matters, not its digits.
LOG_SCALE = {"learning_rate"}
MAX_VALUES = 20  # per grid axis


def _param_schema(name: str) -> dict[str, Any]:
    """The JSON schema of one hyperparameter's value (bounds, type), without its prose."""
    schema = dict(Hyperparams.model_json_schema()["properties"][name])
    for key in ("default", "title", "description"):
        schema.pop(key, None)
    return schema


def _axes_schema(ranges: bool) -> Any:
    """A precise JSON schema for `grid` (or `sample.ranges`): one property per hyperparameter a
    study can vary, each an array of that hyperparameter's valid values."""

    def axis(name: str) -> dict[str, Any]:
        values = {"type": "array", "items": _param_schema(name)}
        if ranges and name not in CHOICES:
            return {**values, "minItems": 2, "maxItems": 2, "description": "[low, high]"}
        return {**values, "minItems": 1, "maxItems": MAX_VALUES, "uniqueItems": True}

    def replace(schema: dict[str, Any]) -> None:
        described: dict[str, Any] = {"type": "object", "properties": {n: axis(n) for n in VARIABLE}}
        described["additionalProperties"] = False
        if ranges:
            described["minProperties"] = 1
            schema.clear()
            schema.update(described)
        else:
            schema["anyOf"] = [described, {"type": "null"}]

    return replace


def _same(value: Any) -> tuple[str, Any]:
    """What makes two values the same one: 1 and 1.0 are, true and 1 are not (as in JSON)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", float(value))
    return (type(value).__name__, repr(value))


def _check_axes(axes: dict[str, Any]) -> dict[str, Any]:
    unknown = [name for name in axes if name not in VARIABLE]
    if unknown:
        raise ValueError(
            f"{', '.join(unknown)}: not a hyperparameter a study can vary "
            f"(one of {', '.join(VARIABLE)}; the seed is set by `seeds`)"
        )
    return axes


class Sample(BaseModel):
    """`n` configurations drawn at random from `ranges`."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(ge=1, le=100, description="How many configurations to draw.")
    ranges: dict[str, list[Any]] = Field(
        min_length=1,
        description="Per hyperparameter: [low, high] for a number (log-uniform for the learning "
        "rate, whole numbers for integers), or the choices for `optimizer` and `normalize`.",
        json_schema_extra=_axes_schema(ranges=True),
    )
    seed: int | None = Field(None, ge=0, le=INT32_MAX, description="Seed of the draws.")

    @field_validator("ranges")
    @classmethod
    def _ranges(cls, ranges: dict[str, list[Any]]) -> dict[str, list[Any]]:
        _check_axes(ranges)
        for name, bounds in ranges.items():
            if name in CHOICES:
                if not bounds or len({_same(b) for b in bounds}) != len(bounds):
                    raise ValueError(f"{name}: give the choices to draw from, each once")
            elif len(bounds) != 2 or not all(
                isinstance(b, int | float) and not isinstance(b, bool) for b in bounds
            ):
                raise ValueError(f"{name}: give [low, high]")
            elif name in LOG_SCALE and min(bounds) <= 0:
                raise ValueError(f"{name}: a log-uniform range needs low > 0")
            for bound in bounds:  # each end a valid value of its hyperparameter
                try:
                    Hyperparams.model_validate({name: bound}, strict=True)
                except ValidationError as exc:
                    raise ValueError(f"{name}: {bound!r} {field_errors(exc)[name]}") from None
        # [high, low] is the same range.
        return {name: b if name in CHOICES else sorted(b) for name, b in ranges.items()}


class StudyRequest(BaseModel):
    """Body of POST /api/studies."""

    model_config = ConfigDict(extra="forbid")

    name: Name = None
    params: Hyperparams = Field(
        default_factory=Hyperparams,
        description="Base hyperparameters (omitted ones take their defaults); a `seed` here is "
        "the first replicate's, else one is drawn.",
    )
    grid: dict[str, list[Any]] | None = Field(
        None,
        description='Every combination of these values, e.g. `{"normalize": [true, false]}`.',
        json_schema_extra=_axes_schema(ranges=False),
    )
    sample: Sample | None = Field(None, description="Or: configurations drawn at random.")
    search: SearchSpec | None = Field(
        None,
        description="Or: an adaptive search (Optuna): trials asked one by one as workers free, "
        "weak ones stopped early on the validation metric; needs params.validation_split > 0.",
    )
    seeds: int = Field(3, ge=1, le=20, description="Replicates of each configuration.")

    @field_validator("grid")
    @classmethod
    def _grid(cls, grid: dict[str, list[Any]] | None) -> dict[str, list[Any]] | None:
        if grid is None:
            return grid
        _check_axes(grid)
        for name, values in grid.items():
            if not 1 <= len(values) <= MAX_VALUES:
                raise ValueError(f"{name}: give 1 to {MAX_VALUES} values")
            if len({_same(value) for value in values}) != len(values):
                raise ValueError(f"{name}: the values repeat")
        return grid

    @model_validator(mode="after")
    def _one_design(self) -> StudyRequest:
        if sum(x is not None for x in (self.grid, self.sample, self.search)) > 1:
            raise ValueError("give one of grid, sample or search, not both")
        return self

    def base(self) -> dict[str, Any]:
        """The base hyperparameters that were given (the others take their defaults)."""
        return self.params.model_dump(exclude_unset=True, exclude={"seed"})

    def design(self) -> dict[str, Any]:
        """What made the configurations, as stored with the study."""
        if self.sample is not None:
            return {"sample": self.sample.model_dump()}
        return {"grid": self.grid or {}}

    def varied(self) -> list[str]:
        axes = self.sample.ranges if self.sample is not None else self.grid or {}
        return [name for name in VARIABLE if name in axes]

    def configurations(self) -> list[dict[str, Any]]:
        """Each configuration's values of the varied hyperparameters, in order."""
        if self.sample is not None:
            return draw(self.sample)
        grid = self.grid or {}
        names = self.varied()
        return [
            dict(zip(names, values, strict=True))
            for values in itertools.product(*(grid[n] for n in names))
        ]


def config_label(config: dict[str, Any]) -> str:
    """A configuration in words: "raw pixels", "optimizer=sgd, learning_rate=0.01"."""
    if not config:
        return "the base configuration"
    words = []
    for name, value in config.items():
        if name == "normalize":
            words.append("normalized pixels" if value else "raw pixels")
        elif isinstance(value, bool):
            words.append(f"{name}={'yes' if value else 'no'}")
        else:
            words.append(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}")
    return ", ".join(words)


def draw(sample: Sample) -> list[dict[str, Any]]:
    """`sample.n` configurations drawn from its ranges (the same ones again for the same seed)."""
    rng = random.Random(sample.seed)
    configs = []
    for _ in range(sample.n):
        config: dict[str, Any] = {}
        for name in VARIABLE:
            if name not in sample.ranges:
                continue
            bounds = sample.ranges[name]
            if name in CHOICES:
                config[name] = rng.choice(bounds)
            elif name in INTEGERS:
                config[name] = rng.randint(math.ceil(bounds[0]), math.floor(bounds[1]))
            elif name in LOG_SCALE:
                config[name] = float(
                    f"{math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))):.3g}"
                )
            else:
                config[name] = round(rng.uniform(bounds[0], bounds[1]), 4)
        configs.append(config)
    return configs


def run_params(base: dict[str, Any], config: dict[str, Any], seed: int) -> Hyperparams:
    """One replicate's hyperparameters, checked strictly like a submitted run's."""
    data = {**base, **config, "seed": seed % (INT32_MAX + 1)}
    data = {
        key: int(value)
        if key in INTEGERS and isinstance(value, float) and value.is_integer()
        else value
        for key, value in data.items()
    }
    return Hyperparams.model_validate(data, strict=True)


def expand(
    request: StudyRequest, first_seed: int, max_runs: int
) -> tuple[list[dict[str, Any]], list[tuple[int, Hyperparams]]]:
    """The configurations and every (configuration, hyperparameters) run the study submits.

    Raises 422 naming the configuration and field of a combination that is not a valid run, or
    the total when it is over `max_runs`.
    """
    configs = request.configurations()
    total = len(configs) * request.seeds
    if total > max_runs:
        raise InvalidParams(
            f"this study would queue {total} runs ({len(configs)} configurations x "
            f"{request.seeds} seeds); at most {max_runs} (TRAINYARD_MAX_STUDY_RUNS)",
            {"seeds": f"{total} runs, limit {max_runs}"},
        )
    base = request.base()
    runs = []
    for index, config in enumerate(configs):
        for replicate in range(request.seeds):
            try:
                runs.append((index, run_params(base, config, first_seed + replicate)))
            except ValidationError as exc:
                axis = "sample.ranges" if request.sample is not None else "grid"
                fields = {
                    f"{axis if name in config else 'params'}.{name}": reason
                    for name, reason in field_errors(exc).items()
                }
                where = "configuration " + (
                    ", ".join(f"{k}={v!r}" for k, v in config.items()) or "base"
                )
                raise InvalidParams.for_fields(f"{where} is not a valid run", fields) from exc
    return configs, runs
