"""Reads of runs, their epochs, evaluations and models. Each takes a session and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import Boolean, Select, func, literal, select, text, tuple_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from shared.domain.cursor import Position
from shared.domain.errors import NotFound
from shared.domain.filters import RunQueryBase
from shared.domain.params import Hyperparams
from shared.domain.status import RunStatus
from shared.store.models import Epoch, Evaluation, Run, TrainedModel


def get_run(session: Session, run_id: int) -> Run:
    """Return the run or raise NotFound."""
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist", {"id": "no such run"})
    return run


def find_by_idempotency_key(session: Session, key: str) -> Run | None:
    """Return the run an earlier submit with this Idempotency-Key created, if any."""
    return session.scalar(select(Run).where(Run.idempotency_key == key))


class has_all_tags(FunctionElement[bool]):
    """True when the tags column holds every one of the given tags."""

    type = Boolean()
    inherit_cache = True
    name = "has_all_tags"

    def __init__(self, column: Any, tags: list[str]) -> None:
        super().__init__(column, *(literal(tag) for tag in tags))


@compiles(has_all_tags, "postgresql")
def _has_all_tags_postgresql(element: has_all_tags, compiler: SQLCompiler, **kw: Any) -> str:
    column, *tags = element.clauses
    wanted = ", ".join(compiler.process(tag, **kw) for tag in tags)
    return f"{compiler.process(column, **kw)} @> CAST(ARRAY[{wanted}] AS VARCHAR(64)[])"


@compiles(has_all_tags)
def _has_all_tags_json(element: has_all_tags, compiler: SQLCompiler, **kw: Any) -> str:
    column, *tags = element.clauses
    wanted = ", ".join(compiler.process(tag, **kw) for tag in tags)
    return (
        f"(SELECT count(DISTINCT value) FROM json_each({compiler.process(column, **kw)})"
        f" WHERE value IN ({wanted})) = {len(tags)}"
    )


def apply_filters(statement: Select[Any], query: BaseModel) -> Select[Any]:
    """Add the query's filters to a select over Run."""
    values = query.model_dump(exclude_none=True)
    if "status" in values:
        statement = statement.where(
            Run.status.in_([RunStatus(s) for s in values["status"].split(",")])
        )
    if "q" in values:
        # ILIKE on PostgreSQL, which the trigram index on the name answers.
        statement = statement.where(Run.name.icontains(values["q"], autoescape=True))
    if "tag" in values:
        statement = statement.where(
            has_all_tags(Run.tags, list(dict.fromkeys(values["tag"].split(","))))
        )
    if values.get("archived", "false") != "any":
        statement = statement.where(Run.archived.is_(values.get("archived", "false") == "true"))
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


# Matches are counted exactly up to this many; past it the total is a bound or an estimate.
# A thousand keeps a tag with a filter under 5 ms at a million runs: each match counted is a
# heap page read (10,000 cost ~40 ms there, bench.runs_pages --runs 1000000).
TOTAL_BOUND = 1_000


@dataclass(frozen=True)
class Total:
    """How many runs match: exactly (`eq`), at least (`gte`), or about (`about`, the planner's
    estimate), the count never reading more than TOTAL_BOUND + 1 rows."""

    value: int
    relation: Literal["eq", "gte", "about"] = "eq"


@dataclass(frozen=True)
class Page:
    """One page of runs, the total that matched, and where the next page starts."""

    runs: list[Run]
    total: Total
    page: int
    limit: int
    next: Position | None

    @property
    def pages(self) -> int:
        return max(1, -(-self.total.value // self.limit))


def count_matching(session: Session, query: BaseModel, bound: int = TOTAL_BOUND) -> Total:
    """How many runs match the filters, exactly up to `bound`."""
    matching = apply_filters(select(Run.id), query)
    capped = matching.limit(bound + 1).subquery()
    with _through_indexes(session, query):
        count = session.scalar(select(func.count()).select_from(capped)) or 0
    if count <= bound:
        return Total(count)
    return _past_bound(_planner_estimate(session, matching), bound)


def _past_bound(estimate: int | None, bound: int) -> Total:
    """The total of a select known to match more than `bound` runs: the planner's estimate
    when it says more, else "at least `bound`"."""
    if estimate is not None and estimate > bound:
        return Total(estimate, "about")
    return Total(bound, "gte")


def _planner_estimate(session: Session, statement: Select[Any]) -> int | None:
    """PostgreSQL's estimate of the rows a select returns (None elsewhere, or if it cannot say)."""
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        return None
    try:
        sql = statement.compile(dialect=bind.dialect, compile_kwargs={"literal_binds": True})
    except Exception:  # a value with no literal form: say "at least" instead
        return None
    plan = session.execute(text(f"EXPLAIN (FORMAT JSON) {sql}".replace(":", r"\:"))).scalar()
    if not plan:
        return None
    return int(plan[0]["Plan"]["Plan Rows"])


def _sort_value(run: Run, field: str) -> Any:
    value = getattr(run, field)
    return value.value if isinstance(value, RunStatus) else value


def _after(statement: Select[Any], column: Any, after: Position, descending: bool) -> Select[Any]:
    value = RunStatus(after.value) if after.sort.lstrip("-") == "status" else after.value
    key, last = tuple_(column, Run.id), tuple_(literal(value, column.type), literal(after.id))
    return statement.where(key < last if descending else key > last)


def _keyset_rows(
    session: Session, statement: Select[Any], sort: str, after: Position | None, count: int
) -> list[Any]:
    """`count` rows in the sort's order after `after`, each part read off an index in order:
    the rows that have a value, then (NULLs last) those that have none, by id."""
    descending = sort.startswith("-")
    field = sort.lstrip("-")
    column = getattr(Run, field)
    by_id = Run.id.desc() if descending else Run.id.asc()
    if field == "id":
        if after is not None:
            statement = statement.where(Run.id < after.id if descending else Run.id > after.id)
        return list(session.scalars(statement.order_by(by_id).limit(count)))
    rows: list[Any] = []
    if after is None or after.value is not None:
        valued = statement.where(column.is_not(None)) if column.nullable else statement
        if after is not None:
            valued = _after(valued, column, after, descending)
        ordered = valued.order_by(column.desc() if descending else column.asc(), by_id)
        rows = list(session.scalars(ordered.limit(count)))
    if column.nullable and len(rows) < count:
        empty = statement.where(column.is_(None))
        if after is not None and after.value is None:
            empty = empty.where(Run.id < after.id if descending else Run.id > after.id)
        # Ordered by the (all NULL) column too, so the (column, id) index serves this part.
        in_order = empty.order_by(column.desc() if descending else column.asc(), by_id)
        rows += session.scalars(in_order.limit(count - len(rows)))
    return rows


@contextmanager
def _planner_off(session: Session, scans: tuple[str, ...]) -> Iterator[None]:
    """Within the transaction, forbid PostgreSQL's planner these scans (`SET LOCAL
    enable_<scan> = off`), and allow them again after."""
    for scan in scans:
        session.execute(text(f"SET LOCAL enable_{scan} = off"))
    try:
        yield
    finally:
        for scan in scans:
            session.execute(text(f"SET LOCAL enable_{scan} = on"))


def _through_indexes(session: Session, query: BaseModel) -> AbstractContextManager[None]:
    """On PostgreSQL, read a tag filter's bounded matches through the tags' GIN index (which holds
    the common filters' columns too), never a scan of the table: under a LIMIT the planner would
    scan, hoping to meet enough matches early, and a tag with a filter that matches few or no runs
    then reads every row (270 ms at a million runs)."""
    guided = session.get_bind().dialect.name == "postgresql" and getattr(query, "tag", None)
    return _planner_off(session, ("seqscan",) if guided else ())


def list_runs(
    session: Session, query: RunQueryBase, after: Position | None = None, count: bool = True
) -> Page:
    """One page of runs matching the query: after the cursor's `after` (or page 1), or by
    `?page=` (an OFFSET, for old links); with the total, unless `count` is False.

    The matches' ids are read first, at most TOTAL_BOUND + 1 of them in no order (the filters'
    indexes answer that). When that is all of them, the page is read among those ids: a
    filter that matches few runs, or none, never walks the sort's index through the whole
    table looking for rows that are not there (the planner guesses a tag and a filter, or
    two filters, independent; a tag whose runs all have other hyperparameters took 350 ms at
    a million runs). Past the bound the matches are dense enough for the sort's index."""
    matching = apply_filters(select(Run.id), query)
    with _through_indexes(session, query):
        ids = list(session.scalars(matching.limit(TOTAL_BOUND + 1)))
    few = len(ids) <= TOTAL_BOUND

    def narrowed(statement: Select[Any]) -> Select[Any]:
        return statement.where(Run.id.in_(ids)) if few else apply_filters(statement, query)

    filtered = narrowed(select(Run))
    estimate = None if few else _planner_estimate(session, matching)
    # A tag's matches are spread over the whole history (tags are set afterwards, in bulk too):
    # walking the sort's index meets them soon, and the GIN bitmap of thousands costs more.
    sparse = estimate if not getattr(query, "tag", None) else None
    with _among_matches(session, sparse):
        if few and not ids:
            runs: list[Run] = []
        elif after is None and query.page > 1:
            offset = (query.page - 1) * query.limit
            statement = order_by(filtered, query.sort).offset(offset).limit(query.limit)
            runs = list(session.scalars(statement))
        else:
            runs = _keyset_rows(session, filtered, query.sort, after, query.limit)
        following = None
        if len(runs) == query.limit:
            last = runs[-1]
            position = Position(query.sort, _sort_value(last, query.sort.lstrip("-")), last.id)
            # Is there a row after it? One id read off the same index, no run loaded.
            more = _keyset_rows(session, narrowed(select(Run.id)), query.sort, position, 1)
            following = position if more else None
    if not count:
        total = Total(0, "gte")
    elif few:
        total = Total(len(ids))
    else:
        total = _past_bound(estimate, TOTAL_BOUND)
    return Page(runs, total, query.page, query.limit, following)


# Past this many estimated matches, walking the sort's index meets a page of them soon enough.
SPARSE_MATCHES = 20_000


def _among_matches(session: Session, estimate: int | None) -> AbstractContextManager[None]:
    """On PostgreSQL, when the filters match more runs than TOTAL_BOUND but (the planner says) at
    most SPARSE_MATCHES, read them through the filters' indexes (a bitmap scan) and sort those,
    rather than walk the sort's index hoping to meet them: the planner assumes the matches spread
    evenly, and a day of `created_after`/`created_before` in a million runs, all of them in one
    stretch of ids, had the newest-first page walk half the table (160 ms)."""
    guided = estimate is not None and estimate <= SPARSE_MATCHES
    return _planner_off(session, ("indexscan", "seqscan") if guided else ())


def queued_count(session: Session) -> int:
    """How many runs wait in the queue."""
    return session.scalar(select(func.count(Run.id)).where(Run.status == RunStatus.QUEUED)) or 0


def queued_runs(session: Session, limit: int = 1000) -> list[Run]:
    """Return queued runs in the order workers take them: oldest first."""
    statement = select(Run).where(Run.status == RunStatus.QUEUED).order_by(Run.id).limit(limit)
    return list(session.scalars(statement))


def epochs_of(session: Session, run_id: int) -> list[Epoch]:
    """Return the run's epoch rows in order."""
    return list(session.scalars(select(Epoch).where(Epoch.run_id == run_id).order_by(Epoch.epoch)))


def latest_epochs(session: Session, run_ids: list[int]) -> dict[int, Epoch]:
    """Return each run's last recorded epoch, for a page of runs, in one query."""
    if not run_ids:
        return {}
    last = (
        select(Epoch.run_id, func.max(Epoch.epoch).label("epoch"))
        .where(Epoch.run_id.in_(run_ids))
        .group_by(Epoch.run_id)
        .subquery()
    )
    rows = session.scalars(
        select(Epoch).join(last, (Epoch.run_id == last.c.run_id) & (Epoch.epoch == last.c.epoch))
    )
    return {row.run_id: row for row in rows}


def queue_positions(session: Session, runs: list[Run]) -> dict[int, int]:
    """Return the 1-based queue place (oldest first) of each queued run among `runs`, in one query."""
    queued = [run.id for run in runs if run.status == RunStatus.QUEUED]
    if not queued:
        return {}
    ranked = (
        select(Run.id, func.row_number().over(order_by=Run.id).label("position"))
        .where(Run.status == RunStatus.QUEUED)
        .subquery()
    )
    rows = session.execute(select(ranked.c.id, ranked.c.position).where(ranked.c.id.in_(queued)))
    return {run_id: int(position) for run_id, position in rows}


def runs_by_id(session: Session, run_ids: list[int]) -> dict[int, Run]:
    """The runs with these ids that exist, by id, in one query."""
    return {run.id: run for run in session.scalars(select(Run).where(Run.id.in_(run_ids)))}


def epochs_by_run(session: Session, run_ids: list[int]) -> dict[int, list[Epoch]]:
    """Each run's epoch rows in order (an empty list for a run without any), in one query."""
    series: dict[int, list[Epoch]] = {run_id: [] for run_id in run_ids}
    if run_ids:
        statement = (
            select(Epoch).where(Epoch.run_id.in_(run_ids)).order_by(Epoch.run_id, Epoch.epoch)
        )
        for row in session.scalars(statement):
            series[row.run_id].append(row)
    return series


def per_class_accuracies(session: Session, run_ids: list[int]) -> dict[int, list[float | None]]:
    """The per-class test accuracy of each evaluated run, in one query."""
    # Only the per-class figures: a whole evaluation row also carries the sample digits.
    statement = select(Evaluation.run_id, Evaluation.per_class_accuracy).where(
        Evaluation.run_id.in_(run_ids)
    )
    return {run_id: list(figures) for run_id, figures in session.execute(statement)}


def has_trained_model(session: Session, run_id: int) -> bool:
    """Whether a succeeded run's model is kept, without loading the file."""
    statement = select(TrainedModel.run_id).where(TrainedModel.run_id == run_id)
    return session.scalar(statement) is not None


def trained_model(session: Session, run_id: int) -> TrainedModel | None:
    """The run's trained model (its `.keras` file), if one is kept."""
    return session.get(TrainedModel, run_id)
