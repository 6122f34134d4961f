"""Query strings, parsed strictly: the types of their values, and the model that refuses unknown keys.

Pydantic's lax mode would take "1.0" as an int, "yes" as a bool and "123" as a timestamp, and a
client that sent those meant something else: each value must be written as its type is.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, AllowInfNan, BaseModel, BeforeValidator, ConfigDict, Field

from shared.domain.params import INT32_MAX

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


def query_int(ge: int = -INT32_MAX, le: int = INT32_MAX) -> Any:
    """An integer from `ge` to `le`, written as digits. The default range is a 32-bit column's,
    so no database is asked for a bigger number."""
    return Annotated[int, Field(ge=ge, le=le), strict_text(INT_TEXT, "an integer")]


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


QueryInt = query_int()
QueryFloat = Annotated[float, strict_text(FLOAT_TEXT, "a number"), AllowInfNan(False)]
QueryBool = Annotated[bool, BeforeValidator(_bool_text)]
QueryTime = Annotated[
    datetime, strict_text(DATETIME_TEXT, "an ISO 8601 time"), AfterValidator(_utc)
]
QUERY_TYPES: dict[Any, Any] = {int: QueryInt, float: QueryFloat, bool: QueryBool}


class QueryModel(BaseModel):
    """A query string's schema: unknown keys are refused; `repeatable` keys may come once per value
    (`status=a&status=b`, as a form's ticked boxes send them) and read as `status=a,b`."""

    model_config = ConfigDict(extra="forbid")
    repeatable: ClassVar[frozenset[str]] = frozenset()
