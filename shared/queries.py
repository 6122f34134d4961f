"""Run history queries: the filter, sort and page schema both the dashboard and the API use."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from annotated_types import Interval
from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
)
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from shared.errors import BadRequest
from shared.models import Run, RunStatus
from shared.params import Hyperparams, field_errors

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
SortKey = Literal[tuple([*SORT_FIELDS, *(f"-{name}" for name in SORT_FIELDS)])]  # type: ignore[misc]
MAX_LIMIT = 200
# Integer filters stay within a 32-bit column's range, so no database is asked for a bigger number.
INT_LIMIT = 2**31 - 1

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


QueryInt = Annotated[
    int, Interval(ge=-INT_LIMIT, le=INT_LIMIT), strict_text(INT_TEXT, "an integer")
]
QueryFloat = Annotated[float, strict_text(FLOAT_TEXT, "a number"), AllowInfNan(False)]
QueryBool = Annotated[bool, BeforeValidator(_bool_text)]
QueryTime = Annotated[
    datetime, strict_text(DATETIME_TEXT, "an ISO 8601 time"), AfterValidator(_utc)
]
QUERY_TYPES: dict[Any, Any] = {int: QueryInt, float: QueryFloat, bool: QueryBool}


class _QueryBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: str | None = Field(
        None,
        description="Comma-separated statuses: queued, running, succeeded, failed, cancelled.",
        pattern=r"^(queued|running|succeeded|failed|cancelled)(,(queued|running|succeeded|failed|cancelled))*$",
    )
    q: str | None = Field(
        None,
        max_length=200,
        pattern=r"^[^\x00]*$",
        description="Case-insensitive substring of the name.",
    )
    test_accuracy_min: QueryFloat | None = Field(None, description="Lowest final test accuracy.")
    test_accuracy_max: QueryFloat | None = Field(None, description="Highest final test accuracy.")
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


RunQuery = create_model("RunQuery", __base__=_QueryBase, **_param_filters())
RunQuery.__doc__ = "Filters, sort and page for GET /api/runs; unknown keys are a 400."


def parse_query(args: dict[str, str]) -> BaseModel:
    """Validate query-string arguments into a RunQuery, raising BadRequest naming each bad key."""
    try:
        return RunQuery.model_validate(args)
    except ValidationError as exc:
        fields = field_errors(exc)
        for key, reason in list(fields.items()):
            if reason == "unknown field":
                fields[key] = "unknown filter or parameter"
            else:
                fields[key] = reason.removeprefix("Value error, ")
        summary = "; ".join(f"{key}: {reason}" for key, reason in fields.items())
        raise BadRequest(f"invalid query ({summary})", fields) from exc


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


@dataclass(frozen=True)
class Page:
    """One page of runs and the total that matched."""

    runs: list[Run]
    total: int
    page: int
    limit: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.limit))


def list_runs(session: Session, query: BaseModel) -> Page:
    """Return one page of runs matching the query, and how many match in all."""
    filtered = apply_filters(select(Run), query)
    total = session.scalar(apply_filters(select(func.count(Run.id)), query)) or 0
    offset = (query.page - 1) * query.limit  # type: ignore[attr-defined]
    rows = session.scalars(order_by(filtered, query.sort).offset(offset).limit(query.limit))  # type: ignore[attr-defined]
    return Page(list(rows), int(total), query.page, query.limit)  # type: ignore[attr-defined]


def queued_runs(session: Session, limit: int = 1000) -> list[Run]:
    """Return queued runs in the order workers take them: oldest first."""
    statement = select(Run).where(Run.status == RunStatus.QUEUED).order_by(Run.id).limit(limit)
    return list(session.scalars(statement))
