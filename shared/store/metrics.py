"""The cluster's figures for Prometheus: totals kept by the writes themselves, and the state read
at scrape time with bounded queries.

A write that ends a run, records an epoch or takes a run back calls `count` or `observe` with its
session. The increments wait in the session and are written just before it commits, in the same
transaction and in one fixed order (so two transactions never wait on each other's rows in a
cycle), to one of a total's SHARDS rows; a rolled-back unit of work counts nothing. Every web
process then reads the same totals.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Float,
    Insert,
    SmallInteger,
    String,
    bindparam,
    case,
    cast,
    event,
    func,
    literal,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, SessionTransaction

from shared.domain.metrics import INF, HistogramSpec, bucket_label
from shared.domain.status import RunStatus
from shared.store.models import MetricTotal, Run, Worker

_PENDING = "trainyard.metric_totals"
# Rows a total is spread over. Every epoch write, claim and finish in the cluster adds to a few
# totals; on one row each, 200 nodes' writes queued on its lock (an epoch write's p99 grew past
# hundreds of ms). A scrape sums at most SHARDS rows a total.
SHARDS = 16


def count(session: Session, name: str, label: str = "", by: float = 1.0) -> None:
    """Add `by` to a total when this session commits."""
    if not session.in_transaction():
        session.begin()  # so that a rollback or close before any statement forgets it too
    pending: defaultdict[tuple[str, str], float] = session.info.setdefault(
        _PENDING, defaultdict(float)
    )
    pending[(name, label)] += by


def observe(session: Session, histogram: HistogramSpec, value: float) -> None:
    """Record one observation of a histogram when this session commits."""
    count(session, histogram.name, histogram.bucket(value))
    count(session, histogram.sum_name, "", value)


# One total's increment in a statement that writes and counts at once: its name, its label and
# what it adds, as SQL expressions over the gating query's row.
TotalRow = tuple[str, ColumnElement[str], ColumnElement[float]]


def histogram_rows(histogram: HistogramSpec, seconds: ColumnElement[float]) -> list[TotalRow]:
    """One observation of `histogram` in a statement (`seconds`: a bound value or one the
    database computes): its bucket's count, chosen by a CASE over the bounds as
    `HistogramSpec.bucket` chooses, and its sum."""
    bucket = case(
        *((seconds <= bound, bucket_label(bound)) for bound in histogram.bounds),
        else_=bucket_label(INF),
    )
    return [
        (histogram.name, bucket, literal(1.0, Float())),
        (histogram.sum_name, literal("", String()), seconds),
    ]


def add_totals(
    gate: CTE, rows: list[TotalRow], where: dict[str, ColumnElement[bool]] | None = None
) -> Insert:
    """An upsert adding `rows` (each a total's increment, computed from `gate`'s row) to one
    shard (the bound parameter `total_shard`), for a statement that writes and counts at once:
    nothing is added when `gate`, a data-modifying WITH query, returned no row, nor a total
    whose `where` condition (by name) is false. Rows go in name order, as `_write_pending`
    writes them."""
    shard = cast(bindparam("total_shard", type_=SmallInteger()), SmallInteger())
    selects = [
        select(literal(name, String()), label, shard, cast(by, Float()))
        .select_from(gate)
        .where((where or {}).get(name, true()))
        for name, label, by in sorted(rows, key=lambda row: row[0])
    ]
    statement = postgresql.insert(MetricTotal).from_select(
        ["name", "label", "shard", "value"], union_all(*selects)
    )
    return statement.on_conflict_do_update(
        index_elements=["name", "label", "shard"],
        set_={"value": MetricTotal.value + statement.excluded.value},
    )


def shard_parameter() -> dict[str, int]:
    """`add_totals`' parameter: a shard drawn as `_write_pending` draws one."""
    return {"total_shard": random.randrange(SHARDS)}


def _write_pending(session: Session) -> None:
    pending: dict[tuple[str, str], float] | None = session.info.pop(_PENDING, None)
    if not pending:
        return
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    # One shard for the whole transaction, its rows in one order: no two writers wait on each
    # other in a cycle, and two at once meet on a row only when they drew the same shard.
    shard = random.randrange(SHARDS)
    rows = [
        {"name": name, "label": label, "shard": shard, "value": by}
        for (name, label), by in sorted(pending.items())
    ]
    statement = insert(MetricTotal).values(rows)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["name", "label", "shard"],
            set_={"value": MetricTotal.value + statement.excluded.value},
        )
    )


def _forget_pending(session: Session, transaction: SessionTransaction) -> None:
    # A unit of work rolled back or closed without a commit counts nothing.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


event.listen(Session, "before_commit", _write_pending)
event.listen(Session, "after_transaction_end", _forget_pending)


def totals(session: Session) -> dict[tuple[str, str], float]:
    """Every kept total by (name, label): a few dozen rows whatever the number of runs."""
    rows = session.execute(
        select(MetricTotal.name, MetricTotal.label, func.sum(MetricTotal.value)).group_by(
            MetricTotal.name, MetricTotal.label
        )
    )
    return {(name, label): float(value) for name, label, value in rows}


@dataclass(frozen=True)
class ClusterState:
    """What the cluster looks like now, by the database's clock."""

    queued: int = 0
    running: int = 0
    oldest_queued_age: float = 0.0
    live_workers: int = 0
    worker_slots: int = 0


def database_now(session: Session) -> datetime:
    """The database server's clock, in UTC: one clock for every web process and host."""
    if session.get_bind().dialect.name == "sqlite":
        raw = session.scalar(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"))
        return datetime.fromisoformat(str(raw)).replace(tzinfo=UTC)
    value = session.scalar(select(func.now()))
    assert isinstance(value, datetime)
    return value.astimezone(UTC)


def _as_utc(value: Any) -> datetime:
    if isinstance(value, str):  # SQLite's MIN() loses the column's type
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


LIVE = (RunStatus.QUEUED, RunStatus.RUNNING)


def cluster_state(session: Session, alive_within: float) -> ClusterState:
    """The queued and running runs, the oldest queued run's age, and the live workers and their
    job slots.

    Each is one indexed query whose cost follows the work in flight, not the history: the queued
    and running ranges of the status index (the queue is capped by TRAINYARD_MAX_QUEUED_RUNS, the
    running runs by the workers' slots), the oldest entry of the queued range of
    (status, created_at), and the workers table. Finished runs are counted by the totals.
    """
    now = database_now(session)
    live = dict(
        session.execute(
            select(Run.status, func.count()).where(Run.status.in_(LIVE)).group_by(Run.status)
        ).all()
    )
    oldest = session.scalar(select(func.min(Run.created_at)).where(Run.status == RunStatus.QUEUED))
    age = max(0.0, (now - _as_utc(oldest)).total_seconds()) if oldest is not None else 0.0
    workers, slots = session.execute(
        select(func.count(), func.coalesce(func.sum(Worker.concurrency), 0)).where(
            Worker.stopped_at.is_(None),
            Worker.heartbeat_at >= now - timedelta(seconds=alive_within),
        )
    ).one()
    return ClusterState(
        queued=int(live.get(RunStatus.QUEUED, 0)),
        running=int(live.get(RunStatus.RUNNING, 0)),
        oldest_queued_age=age,
        live_workers=int(workers),
        worker_slots=int(slots),
    )
