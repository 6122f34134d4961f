"""The one clock: the database server's.

Every time a guarantee rests on (a claim, a lease's renewal and expiry, a sweep's take-back, the
resend of a lost message, a worker's liveness) is the database's, read inside the statement that
acts on it: `db_now(seconds)` is "now, plus `seconds`" evaluated by the server. No host compares
its own wall clock with a time another host wrote, so hosts whose clocks are minutes apart, or
jump, settle every run as agreeing clocks would. A duration measured on one host uses that host's
monotonic clock.

On SQLite every process shares one host, so the server's clock is that host's: `db_now` reads
SQLite's own `'now'` (the calling process's clock), written the way SQLAlchemy stores a DateTime
there so that stored times and `db_now` compare as strings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Float, TypeDecorator, literal, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.functions import FunctionElement


def utcnow() -> datetime:
    """This host's current time, timezone-aware in UTC: for logs and tests, never for a time
    another host compares (use `db_now`)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class db_now(FunctionElement[datetime]):
    """The database server's current time plus `seconds`, as a SQL expression."""

    type = UTCDateTime()
    name = "db_now"
    inherit_cache = True

    def __init__(self, seconds: float | BindParameter[float] = 0.0) -> None:
        # A bound parameter lets a statement built once take each lease's length when it runs.
        offset = seconds if isinstance(seconds, BindParameter) else literal(float(seconds), Float())
        super().__init__(offset)


def _offset(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    (seconds,) = element.clauses
    return compiler.process(seconds, **kw)


@compiles(db_now, "postgresql")
def _postgresql(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    # clock_timestamp(), not now(): a statement that waited for a lock acts on the time it runs.
    return f"(clock_timestamp() + make_interval(secs => {_offset(element, compiler, **kw)}))"


@compiles(db_now, "sqlite")
def _sqlite(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLAlchemy stores a DateTime on SQLite as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC here): the same
    # text, so that `<` on two times is `<` on two strings.
    modifier = f"({_offset(element, compiler, **kw)} || ' seconds')"
    return f"(strftime('%Y-%m-%d %H:%M:%f', 'now', {modifier}) || '000')"


def now_of(session: Session) -> datetime:
    """Read the database's clock once (a time to record in a document, or to show ages against)."""
    value: datetime | None = session.scalar(select(db_now()))
    assert value is not None
    return value
