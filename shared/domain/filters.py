"""Run history filters: the filter, sort and page schema the dashboard, the API and the CLI share.

The schema only; `shared.store.queries` turns a query into SQL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, create_model

from shared.domain.params import Hyperparams
from shared.domain.querying import (
    QUERY_TYPES,
    QueryFloat,
    QueryInt,
    QueryModel,
    QueryTime,
    query_int,
)
from shared.domain.status import RunStatus

NUMERIC_PARAMS = tuple(
    name
    for name, info in Hyperparams.model_fields.items()
    if info.annotation in (int, float, int | None)
)
# Sortable columns: the run's own figures and every hyperparameter.
SORT_FIELDS = (
    "id",
    "name",
    "status",
    "created_at",
    "started_at",
    "finished_at",
    "epochs_done",
    "test_accuracy",
    "test_loss",
    *Hyperparams.model_fields,
)
_ANY_STATUS = "(" + "|".join(RunStatus) + ")"
STATUS_LIST = f"^{_ANY_STATUS}(,{_ANY_STATUS})*$"
_A_TAG = r"[A-Za-z0-9\-_.:]{1,64}"
TAG_LIST = f"^{_A_TAG}(,{_A_TAG})*$"
SORT_KEYS = (*SORT_FIELDS, *(f"-{name}" for name in SORT_FIELDS))
MAX_LIMIT = 200
if TYPE_CHECKING:  # to the type checker both are plain integers
    PageNumber = int
    PageSize = int
else:
    PageNumber = query_int(1, 1_000_000)
    PageSize = query_int(1, MAX_LIMIT)


def _sort_key(value: str) -> str:
    if value not in SORT_KEYS:
        raise ValueError("not a sort field (a run field or hyperparameter, '-' to descend)")
    return value


SortKey = Annotated[
    str,
    AfterValidator(_sort_key),
    Field(
        json_schema_extra={
            "enum": SORT_KEYS,
            # Names generated clients give the values: `test_accuracy` and `TEST_ACCURACY_DESC`.
            "x-enum-varnames": [
                key.lstrip("-").upper() + ("_DESC" if key.startswith("-") else "")
                for key in SORT_KEYS
            ],
        }
    ),
]


class RunQueryBase(QueryModel):
    """What every run query has; `RunQuery` adds a filter per hyperparameter."""

    repeatable = frozenset({"status", "tag"})

    status: str | None = Field(
        None,
        description="Comma-separated statuses: queued, running, succeeded, failed, cancelled, pruned.",
        pattern=STATUS_LIST,
    )
    q: str | None = Field(
        None,
        max_length=200,
        pattern=r"^[^\x00]*$",
        description="Case-insensitive substring of the name.",
    )
    tag: str | None = Field(
        None,
        max_length=2000,
        pattern=TAG_LIST,
        description="Comma-separated tags: runs carrying all of them.",
    )
    archived: Literal["false", "true", "any"] = Field(
        "false", description="Archived runs are left out unless `true` (only them) or `any`."
    )
    test_accuracy_min: QueryFloat | None = Field(None, description="Lowest final test accuracy.")
    test_accuracy_max: QueryFloat | None = Field(None, description="Highest final test accuracy.")
    study_id: QueryInt | None = Field(None, description="Runs of this study.")
    created_after: QueryTime | None = Field(
        None, description="Created at or after (ISO 8601; UTC when no zone is given)."
    )
    created_before: QueryTime | None = Field(
        None, description="Created before (ISO 8601; UTC when no zone is given)."
    )
    sort: SortKey = Field("-id", description="Field to sort on; a leading '-' sorts descending.")
    cursor: str | None = Field(
        None,
        max_length=1000,
        description="Where to go on from: a previous answer's `next_cursor` (same sort). "
        "Pages read this way stay fast and stable however many runs there are.",
    )
    page: PageNumber = Field(
        1, description="Page number, from 1 (skips rows: prefer `cursor` past the first pages)."
    )
    limit: PageSize = Field(25, description="Runs per page.")
    format: Literal["json", "csv"] | None = Field(
        None, description="`csv` answers the page as text/csv (as does `Accept: text/csv`)."
    )


def _param_filters() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, info in Hyperparams.model_fields.items():
        annotation = info.annotation
        base = int if annotation == int | None else annotation
        kind: Any = QUERY_TYPES.get(base, base)
        fields[name] = (kind | None, Field(None, description=f"{name} equals this value."))
        if name in NUMERIC_PARAMS:
            fields[f"{name}_min"] = (kind | None, Field(None, description=f"{name} at least this."))
            fields[f"{name}_max"] = (kind | None, Field(None, description=f"{name} at most this."))
    return fields


RunQuery = create_model("RunQuery", __base__=RunQueryBase, **_param_filters())
RunQuery.__doc__ = "Filters, sort and page for GET /api/runs; unknown keys are a 400."
