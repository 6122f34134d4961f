"""The API's request models: they validate bodies and query strings and document them.

The response models are in `shared.read.models`, which the serializers build.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from shared.domain.filters import PageNumber
from shared.domain.params import INT32_MAX, Hyperparams, Name
from shared.domain.querying import QueryModel, query_int


class SubmitRequest(BaseModel):
    """Body of POST /api/runs."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Name = None
    params: Hyperparams = Field(
        default_factory=Hyperparams,
        description="Hyperparameters; omitted ones take their defaults, the seed is drawn.",
    )


class EmptyRequest(BaseModel):
    """The body of an action that takes no arguments: `{}`."""

    model_config = ConfigDict(extra="forbid", strict=True)


class CloneRequest(BaseModel):
    """Body of POST /api/runs/{id}/clone: a new name and parameter overrides, both optional."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Name = None
    params: Hyperparams = Field(
        default_factory=Hyperparams,
        description="Overrides of the source run's hyperparameters; a new seed is drawn unless "
        "`seed` is given.",
    )


class NoQuery(QueryModel):
    """The query of an endpoint that takes no parameters: any key is a 400."""


class MetricsQuery(QueryModel):
    """Query of GET /api/runs/{id}/metrics."""

    format: Literal["json", "csv"] | None = Field(
        None, description="`csv` answers text/csv (as does `Accept: text/csv`)."
    )


def _comma_list(value: Any) -> Any:
    """Split `3,7,9` (OpenAPI's form style, explode=false) into a list."""
    return value.split(",") if isinstance(value, str) else value


def _distinct(value: list[int]) -> list[int]:
    if len(set(value)) != len(value):
        raise ValueError("ids must be distinct")
    return value


RunId = query_int(1, INT32_MAX)
ConfigIndex = query_int(0, 10_000)
StudiesPerPage = query_int(1, 200)


class CompareQuery(QueryModel):
    """Query of GET /api/compare and the compare page."""

    # The runs page's checkboxes send `ids` once per ticked run; a shared link sends `ids=3,7,9`.
    repeatable = frozenset({"ids"})

    ids: Annotated[list[RunId], BeforeValidator(_comma_list), AfterValidator(_distinct)] = Field(
        description="2 to 20 distinct comma-separated run ids, e.g. `3,7,9`.",
        min_length=2,
        max_length=20,
        json_schema_extra={"uniqueItems": True},
    )
    baseline: RunId | None = Field(
        None,
        description="Run the deltas are measured against (default: the first); "
        "compared too when it is not among `ids`.",
    )

    @property
    def compared(self) -> list[int]:
        """The runs to line up: the ids, led by the baseline when it is not one of them."""
        if self.baseline is None or self.baseline in self.ids:
            return self.ids
        return [self.baseline, *self.ids]


class ComparePageQuery(CompareQuery):
    """Query of the compare page: the API's, and whether to list equal hyperparameters too."""

    all: Literal["0", "1"] = "0"


class NewRunQuery(QueryModel):
    """Query of the New run page."""

    clone: RunId | None = Field(None, description="Pre-fill the form from this run.")


class WorkersQuery(QueryModel):
    """Query of GET /api/workers."""

    all: Literal["0", "1"] = Field("0", description="`1` lists stopped and silent workers too.")


# Studies.


class ReplicatesRequest(BaseModel):
    """Body of POST /api/studies/{id}/replicates."""

    model_config = ConfigDict(extra="forbid", strict=True)

    seeds: int = Field(ge=1, le=20, description="Replicates to add to every configuration.")


class StudyQuery(QueryModel):
    """Query of GET /api/studies/{id} and the study page."""

    baseline: ConfigIndex | None = Field(
        None, description="Index of the configuration the others are compared with (0)."
    )


class StudyListQuery(QueryModel):
    """Query of GET /api/studies."""

    page: PageNumber = 1
    limit: StudiesPerPage = 50


class StudyRunsQuery(QueryModel):
    """Query of GET /api/studies/{id}/runs."""

    format: Literal["json", "csv"] | None = Field(
        None, description="`csv` answers text/csv (as does `Accept: text/csv`)."
    )
