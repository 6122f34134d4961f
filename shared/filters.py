"""Run history filters: the filter, sort and page schema the dashboard, the API and the CLI share."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from annotated_types import Interval
from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    create_model,
)
from sqlalchemy import Select, func

from shared.models import Run, RunStatus
from shared.params import INT32_MAX, Hyperparams

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
SORT_KEYS = (*SORT_FIELDS, *(f"-{name}" for name in SORT_FIELDS))
MAX_LIMIT = 200

# Query strings are parsed strictly: pydantic's lax mode would take "1.0" as an int, "yes" as a bool
# and "123" as a timestamp, and a client that sent those meant something else.
INT_TEXT = re.compile(r"^[+-]?[0-9]{1,10}$")
FLOAT_TEXT = re.compile(r"^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]{1,3})?$")
DATETIME_TEXT = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,6})?)?"
    r"([Zz]|[+-][0-9]{2}:?[0-9]{2})?)?$"
)


def strict_text(pattern: re.Pattern[str], what: str) -> Any:
    """A validator that refuses text not matching `pattern` (other types pass through)."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and not pattern.match(value):
            raise ValueError(f"not {what}")
        return value

    return BeforeValidator(check)


def _bool_text(value: Any) -> Any:
    if isinstance(value, str):
        if value not in ("true", "false"):
            raise ValueError("not true or false")
        return value == "true"
    return value


def _utc(value: datetime | None) -> datetime | None:
    """Read a zoneless time as UTC; reject times that fall outside the calendar once in UTC."""
    if value is None:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range") from None


# Integer filters stay within a 32-bit column's range, so no database is asked for a bigger number.
QueryInt = Annotated[
    int, Interval(ge=-INT32_MAX, le=INT32_MAX), strict_text(INT_TEXT, "an integer")
]
QueryFloat = Annotated[float, strict_text(FLOAT_TEXT, "a number"), AllowInfNan(False)]
QueryBool = Annotated[bool, BeforeValidator(_bool_text)]
QueryTime = Annotated[
    datetime, strict_text(DATETIME_TEXT, "an ISO 8601 time"), AfterValidator(_utc)
]
QUERY_TYPES: dict[Any, Any] = {int: QueryInt, float: QueryFloat, bool: QueryBool}


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


class QueryModel(BaseModel):
    """A query string's schema: unknown keys are refused; `repeatable` keys may come once per value
    (`status=a&status=b`, as a form's ticked boxes send them) and read as `status=a,b`."""

    model_config = ConfigDict(extra="forbid")
    repeatable: ClassVar[frozenset[str]] = frozenset()


class RunQueryBase(QueryModel):
    """What every run query has; `RunQuery` adds a filter per hyperparameter."""

    repeatable = frozenset({"status"})

    status: str | None = Field(
        None,
        description="Comma-separated statuses: queued, running, succeeded, failed, cancelled.",
        pattern=STATUS_LIST,
    )
    q: str | None = Field(
        None,
        max_length=200,
        pattern=r"^[^\x00]*$",
        description="Case-insensitive substring of the name.",
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
    page: Annotated[int, strict_text(INT_TEXT, "an integer")] = Field(
        1, ge=1, le=1_000_000, description="Page number, from 1."
    )
    limit: Annotated[int, strict_text(INT_TEXT, "an integer")] = Field(
        25, ge=1, le=MAX_LIMIT, description="Runs per page."
    )


def _param_filters() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, info in Hyperparams.model_fields.items():
        annotation = info.annotation
        base = int if annotation == int | None else annotation
        kind = QUERY_TYPES.get(base, base)
        fields[name] = (kind | None, Field(None, description=f"{name} equals this value."))
        if name in NUMERIC_PARAMS:
            fields[f"{name}_min"] = (kind | None, Field(None, description=f"{name} at least this."))
            fields[f"{name}_max"] = (kind | None, Field(None, description=f"{name} at most this."))
    return fields


RunQuery = create_model("RunQuery", __base__=RunQueryBase, **_param_filters())
RunQuery.__doc__ = "Filters, sort and page for GET /api/runs; unknown keys are a 400."


def apply_filters(statement: Select[Any], query: BaseModel) -> Select[Any]:
    """Add the query's filters to a select over Run."""
    values = query.model_dump(exclude_none=True)
    if "status" in values:
        statement = statement.where(
            Run.status.in_([RunStatus(s) for s in values["status"].split(",")])
        )
    if "q" in values:
        statement = statement.where(
            func.lower(Run.name).contains(values["q"].lower(), autoescape=True)
        )
    if "test_accuracy_min" in values:
        statement = statement.where(Run.test_accuracy >= values["test_accuracy_min"])
    if "test_accuracy_max" in values:
        statement = statement.where(Run.test_accuracy <= values["test_accuracy_max"])
    if "study_id" in values:
        statement = statement.where(Run.study_id == values["study_id"])
    if "created_after" in values:
        statement = statement.where(Run.created_at >= values["created_after"])
    if "created_before" in values:
        statement = statement.where(Run.created_at < values["created_before"])
    for name in Hyperparams.model_fields:
        column = getattr(Run, name)
        if name in values:
            statement = statement.where(column == values[name])
        if f"{name}_min" in values:
            statement = statement.where(column >= values[f"{name}_min"])
        if f"{name}_max" in values:
            statement = statement.where(column <= values[f"{name}_max"])
    return statement


def order_by(statement: Select[Any], sort: str) -> Select[Any]:
    """Sort by the named field, ties broken by id so pages never overlap; NULLs sort last."""
    descending = sort.startswith("-")
    column = getattr(Run, sort.lstrip("-"))
    primary = column.desc() if descending else column.asc()
    tiebreak = Run.id.desc() if descending else Run.id.asc()
    if sort.lstrip("-") == "id":
        return statement.order_by(primary)  # read straight off the primary key's index
    if column.nullable:
        return statement.order_by(column.is_(None), primary, tiebreak)
    return statement.order_by(primary, tiebreak)
