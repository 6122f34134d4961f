"""A run's lease, the holder's side: the claim that makes one worker attempt its holder, and the
fenced writes the attempt makes under it.

The store is the truth and the broker only wakes workers up. A claim turns a queued run into a
running one under a new attempt number; every later write of that attempt (epochs, checkpoint,
heartbeat, final status) is an UPDATE conditional on the run still running under that attempt. A
write that matches no row means the lease is gone: the attempt stops and writes nothing more. The
sweeps (`shared.store.sweeps`) use the same conditions, so a holder and a sweep never both win.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    CTE,
    Connection,
    Float,
    Insert,
    Select,
    String,
    Table,
    Update,
    bindparam,
    cast,
    delete,
    extract,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningUpdate

from shared.domain.lease import CancelRequested, EpochRecord, Lease, LeaseLost, Signals
from shared.domain.metrics import (
    EPOCH_DURATION,
    HANDOVERS,
    QUEUE_WAIT,
    RUN_DURATION,
    RUNS_FINISHED,
)
from shared.domain.status import RunStatus
from shared.store.clock import db_now
from shared.store.engine import forgettable, rows_changed
from shared.store.metrics import (
    add_totals,
    count,
    histogram_rows,
    observe,
    shard_parameter,
)
from shared.store.models import Checkpoint, Epoch, Evaluation, Run, TrainedModel, Worker


def _held(lease: Lease) -> Any:
    """The condition every fenced write carries: the run still running under this attempt."""
    return (
        (Run.id == lease.run_id)
        & (Run.attempt == lease.attempt)
        & (Run.status == RunStatus.RUNNING)
    )


def _renewal(lease: Lease) -> dict[str, Any]:
    # The database's clock, read by the statement that renews: no host's clock is in a lease.
    return {"heartbeat_at": db_now(), "lease_expires_at": db_now(lease.seconds)}


def claim(
    session: Session | Connection,
    run_id: int,
    worker: str,
    pid: int,
    seconds: float,
    node_pid: int = 0,
) -> Lease | None:
    """Atomically make a queued run ours under a new attempt; None when it is not queued, or when
    our node (main process `node_pid`) is leaving (see `leaving`).

    A message for a run that is running, finished or cancelled is simply dropped: the holder has
    it, or nobody needs it, and the sweeps send a new message whenever a queued run lacks one.

    On PostgreSQL the claim and its queue-wait observation are one statement
    (`_claim_statement`): one round trip on an autocommit connection (`Store.statement_scope`).
    """
    if _dialect(session) == "postgresql":
        parameters = {
            "claim_run": run_id,
            "claim_worker": worker,
            "claim_pid": pid,
            "claim_node_pid": node_pid,
            "lease_seconds": seconds,
            **shard_parameter(),
        }
        row = session.execute(_claim_statement(), parameters).first()
        _expire_loaded(session, run_id)
        return None if row is None else Lease(run_id, row.attempt, worker, seconds)
    assert isinstance(session, Session), "a multi-statement write needs a unit of work"
    claimed = session.execute(
        update(Run)
        .where(
            Run.id == run_id,
            Run.status == RunStatus.QUEUED,
            Run.cancel_requested.is_(False),
            ~_leaving(worker, node_pid).exists(),
        )
        .values(
            status=RunStatus.RUNNING,
            worker=worker,
            worker_pid=pid,
            attempt=Run.attempt + 1,
            started_at=func.coalesce(Run.started_at, db_now()),
            heartbeat_at=db_now(),
            lease_expires_at=db_now(seconds),
            handover_requested=False,
            error=None,
        )
        # The wait is from the (re)send to this claim, both on the database's clock.
        .returning(Run.attempt, func.coalesce(Run.sent_at, Run.created_at), Run.heartbeat_at)
    ).one_or_none()
    if claimed is None:
        return None
    attempt, waiting_since, claimed_at = claimed
    observe(session, QUEUE_WAIT, seconds_between(waiting_since, claimed_at))
    return Lease(run_id, attempt, worker, seconds)


def seconds_between(then: datetime | str | None, later: datetime | str | None) -> float:
    """Seconds from `then` to `later`, two times the database wrote (SQLite's COALESCE hands
    back text); 0 when either is missing."""
    if then is None or later is None:
        return 0.0
    start, end = (_as_utc(value) for value in (then, later))
    return max(0.0, (end - start).total_seconds())


def _as_utc(value: datetime | str) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _leaving(worker: str, node_pid: int) -> Any:
    return select(Worker.id).where(
        Worker.name == worker, Worker.pid == node_pid, Worker.stopped_at.is_not(None)
    )


def leaving(session: Session, worker: str, node_pid: int) -> bool:
    """Whether a worker node is shutting down: it finishes or hands over what it holds and takes
    no new run. A warm shutdown may still pass a message to the node's pool for a moment (a
    polling broker's last fetch); that claim is refused and the message sent on to another node."""
    return session.scalar(_leaving(worker, node_pid).exists().select()) or False


def pass_on(session: Session, run_id: int, worker: str, node_pid: int) -> str | None:
    """The queue to send a queued run's message on to when our node is leaving (a claim refused
    for that reason); None when the node is not leaving or the run is not queued."""
    if not leaving(session, worker, node_pid):
        return None
    return session.scalar(select(Run.queue).where(Run.id == run_id, Run.status == RunStatus.QUEUED))


def _why_refused(session: Session | Connection, lease: Lease) -> Exception:
    """Tell a lost lease from a cancel the holder must honour."""
    row = session.execute(
        select(Run.status, Run.attempt, Run.cancel_requested).where(Run.id == lease.run_id)
    ).one_or_none()
    if row is not None and (row.status, row.attempt) == (RunStatus.RUNNING, lease.attempt):
        return CancelRequested(lease)
    return LeaseLost(lease)


def renew(session: Session | Connection, lease: Lease) -> Signals:
    """Extend the lease; return what the holder is asked to do. Raises LeaseLost.

    One statement, the signals read back with the renewal: on an autocommit connection
    (`Store.autocommit`) it is one round trip and holds a pooled server connection for that
    statement alone. It does not wait for the WAL's flush (`forgettable`): run it as a unit of
    work of its own."""
    renewed = session.execute(
        _renewal_statement(_dialect(session)), _lease_parameters(lease)
    ).one_or_none()
    if renewed is None:
        raise LeaseLost(lease)
    return Signals(bool(renewed.cancel_requested), bool(renewed.handover_requested))


def signals(session: Session | Connection, lease: Lease) -> Signals:
    """What the holder is asked to do, without renewing: a read fenced as a renewal is, so a
    lost lease is seen as soon. Raises LeaseLost."""
    row = session.execute(_signals_statement(), _lease_parameters(lease)).one_or_none()
    if row is None:
        raise LeaseLost(lease)
    return Signals(bool(row.cancel_requested), bool(row.handover_requested))


@functools.cache
def _signals_statement() -> Select[tuple[bool, bool]]:
    runs = _table(Run).c
    return select(runs.cancel_requested, runs.handover_requested).where(_bound_fence())


class LeaseKeeper:
    """The holder's side of a lease over time: `check` renews it once `every` seconds have passed
    on this host's monotonic clock since the last renewal, and between renewals only reads the
    flags. A job checks every second so that a cancel is seen soon; renewing at each check wrote
    the run's row as often (200 jobs checking twice a second: 400 updates a second) for a lease
    of 30 s."""

    def __init__(self, lease: Lease, every: float) -> None:
        self.lease = lease
        # A third of the lease at most: two renewals may fail and the lease still holds.
        self.every = min(every, lease.seconds / 3)
        self._renewed = time.monotonic()  # the claim was the first renewal

    def renewed(self) -> None:
        """A fenced write that renews the lease (an epoch's) has just committed."""
        self._renewed = time.monotonic()

    def check(self, connection: Session | Connection) -> Signals:
        """Renew if due, else read the flags; one statement either way. Raises LeaseLost."""
        if time.monotonic() - self._renewed < self.every:
            return signals(connection, self.lease)
        result = renew(connection, self.lease)
        self.renewed()
        return result


@functools.cache
def _renewal_statement(dialect: str) -> ReturningUpdate[tuple[bool, bool]]:
    """`renew`, built once a dialect with bound parameters, as `_epoch_write` is."""
    runs = _table(Run).c
    renewal = forgettable(_bound_renewal(), dialect)
    return renewal.returning(runs.cancel_requested, runs.handover_requested)


def _lease_parameters(lease: Lease) -> dict[str, Any]:
    """The values of `_bound_renewal`'s parameters for `lease`."""
    return {
        "lease_run": lease.run_id,
        "lease_attempt": lease.attempt,
        "lease_seconds": lease.seconds,
    }


def _bound_renewal() -> Update:
    """The fenced renewal of a lease whose run, attempt and length are the bound parameters
    `lease_run`, `lease_attempt` and `lease_seconds`: what `renew` runs, and what an epoch
    write starts from."""
    run_table = _table(Run)
    return (
        update(run_table)
        .where(_bound_fence())
        .values(
            heartbeat_at=db_now(),
            lease_expires_at=db_now(bindparam("lease_seconds", type_=Float())),
        )
    )


def _bound_fence() -> Any:
    """`_held` with the lease's run and attempt as the bound parameters `lease_run` and
    `lease_attempt`."""
    runs = _table(Run).c
    return (
        (runs.id == _bound("lease_run", runs.id))
        & (runs.attempt == _bound("lease_attempt", runs.attempt))
        & (runs.status == RunStatus.RUNNING)
    )


def record_environment(session: Session, lease: Lease, environment: dict[str, str]) -> None:
    """Store the versions and dataset checksum that make the run reproducible. Raises LeaseLost."""
    values = {**environment, **_renewal(lease)}
    if rows_changed(session.execute(update(Run).where(_held(lease)).values(**values))) != 1:
        raise LeaseLost(lease)


def _insert_for(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"no upsert for {dialect}")


def _upsert(session: Session, model: type[Any], keys: list[str], values: dict[str, Any]) -> None:
    statement = _insert_for(session)(model).values(**values)
    changed = {k: v for k, v in values.items() if k not in keys}
    session.execute(statement.on_conflict_do_update(index_elements=keys, set_=changed))


def record_epoch(
    session: Session | Connection,
    lease: Lease,
    record: EpochRecord,
    checkpoint: bytes | None = None,
) -> None:
    """Record a finished epoch and its checkpoint, in one unit with the lease's renewal.

    The run row is updated first and only while this attempt holds it with no cancel accepted;
    that UPDATE also orders the write against a concurrent cancel or sweep (the row is locked
    until commit), so no epoch lands after either. Raises LeaseLost or CancelRequested.

    On PostgreSQL the whole write is one statement, the epoch, checkpoint and metrics gated on
    the fenced UPDATE: on an autocommit connection (`Store.statement_scope`) it is one round
    trip, where a transaction of its parts was six, each holding a pooled server connection.
    """
    if _dialect(session) == "postgresql":
        parameters = {
            **dataclasses.asdict(record),
            **_lease_parameters(lease),
            **shard_parameter(),
        }
        if checkpoint is not None:
            parameters |= {"state": checkpoint, "size": len(checkpoint)}
        if session.execute(_epoch_write(checkpoint is not None), parameters).first() is None:
            raise _why_refused(session, lease)
        return
    assert isinstance(session, Session), "a multi-statement write needs a unit of work"
    progressed = session.execute(
        update(Run)
        .where(_held(lease), Run.cancel_requested.is_(False))
        .values(epochs_done=record.epoch, **_renewal(lease))
        # The job's unit of work loads no run to keep in step, and evaluating the fence against
        # the session's objects in Python was a tenth of the 200-node bench's CPU.
        .execution_options(synchronize_session=False)
    )
    if rows_changed(progressed) != 1:
        raise _why_refused(session, lease)
    observe(session, EPOCH_DURATION, record.seconds)
    row = {**dataclasses.asdict(record), "run_id": lease.run_id, "attempt": lease.attempt}
    _upsert(session, Epoch, ["run_id", "epoch"], {**row, "recorded_at": db_now()})
    if checkpoint is not None:
        _upsert(
            session,
            Checkpoint,
            ["run_id"],
            {
                "run_id": lease.run_id,
                "epoch": record.epoch,
                "attempt": lease.attempt,
                "state": checkpoint,
                "size": len(checkpoint),
                "saved_at": db_now(),
            },
        )


def _expire_loaded(session: Session | Connection, run_id: int) -> None:
    """After a statement on the tables (not the ORM's entities) changed a run: a unit of work
    that has the run loaded reads it again, as the ORM's own UPDATE would have kept it."""
    if isinstance(session, Session):
        loaded = session.identity_map.get(session.identity_key(Run, run_id))
        if loaded is not None:
            session.expire(loaded)


def _dialect(session: Session | Connection) -> str:
    bind = session if isinstance(session, Connection) else session.get_bind()
    return bind.dialect.name


# The bound parameter a column's value comes from, where the two names differ: an UPDATE takes a
# parameter named as one of its table's columns for that column's new value.
_PARAMETER = {"attempt": "lease_attempt"}


@functools.cache
def _epoch_write(with_checkpoint: bool) -> Select[tuple[int]]:
    """`record_epoch` on PostgreSQL, built once with bound parameters (no statement to build
    and no cache key to compute per epoch): WITH the fenced UPDATE of the run, the upserts of
    the epoch, the checkpoint and the epoch-duration totals, each inserting only the rows of
    the UPDATE's RETURNING. It returns the run's id, or no row when the fence refused. Built on
    the tables, not the ORM's entities, whose UPDATE renames bound parameters."""
    run_table, epoch_table, checkpoint_table = (_table(m) for m in (Run, Epoch, Checkpoint))
    runs = run_table.c
    held = (
        _bound_renewal()
        .where(runs.cancel_requested.is_(False))
        .values(epochs_done=_bound("epoch", runs.epochs_done))
        .returning(runs.id)
        .cte("held")
    )
    fields = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "attempt"]
    writes = [
        _upsert_from(held, epoch_table, "epoch", fields, "recorded_at").cte("epoch_row"),
        add_totals(
            held, histogram_rows(EPOCH_DURATION, _bound("seconds", epoch_table.c.seconds))
        ).cte("totals"),
    ]
    if with_checkpoint:
        kept = ["epoch", "attempt", "state", "size"]
        writes.append(
            _upsert_from(held, checkpoint_table, None, kept, "saved_at").cte("checkpoint_row")
        )
    return select(held.c.id).add_cte(*writes)


def _upsert_from(
    held: CTE, table: Table, key: str | None, fields: list[str], stamp: str | None
) -> Insert:
    """An upsert of `table`'s row for the run `held` returned (keyed by run_id and `key`), with
    `fields` from the bound parameters and `stamp` (if any) the database's time; nothing when
    `held` returned no row."""
    columns = table.c
    stamps = [stamp] if stamp else []
    insert = postgresql.insert(table).from_select(
        ["run_id", *fields, *stamps],
        select(
            held.c.id,
            *(_bound(_PARAMETER.get(name, name), columns[name]) for name in fields),
            *(db_now() for _ in stamps),
        ),
    )
    return insert.on_conflict_do_update(
        index_elements=["run_id", *([key] if key else [])],
        set_={name: insert.excluded[name] for name in [*fields, *stamps]},
    )


def _seconds(since: Any, until: Any) -> Any:
    """The seconds from one database time to another, never below 0 (as `seconds_between`)."""
    return func.greatest(cast(extract("epoch", until - since), Float()), 0.0)


@functools.cache
def _claim_statement() -> Select[tuple[int]]:
    """`claim` on PostgreSQL, built once with bound parameters: WITH the conditional UPDATE that
    makes the queued run ours under a new attempt, the queue-wait observation from its
    RETURNING (from the (re)send to this claim, both on the database's clock). Returns the new
    attempt, or no row when the run was not ours to take."""
    runs = _table(Run).c
    workers = _table(Worker).c
    leaving = select(workers.id).where(
        workers.name == _bound("claim_worker", workers.name),
        workers.pid == _bound("claim_node_pid", workers.pid),
        workers.stopped_at.is_not(None),
    )
    claimed = (
        update(_table(Run))
        .where(
            runs.id == _bound("claim_run", runs.id),
            runs.status == RunStatus.QUEUED,
            runs.cancel_requested.is_(False),
            ~leaving.exists(),
        )
        .values(
            status=RunStatus.RUNNING,
            worker=_bound("claim_worker", runs.worker),
            worker_pid=_bound("claim_pid", runs.worker_pid),
            attempt=runs.attempt + 1,
            started_at=func.coalesce(runs.started_at, db_now()),
            heartbeat_at=db_now(),
            lease_expires_at=db_now(bindparam("lease_seconds", type_=Float())),
            handover_requested=False,
            error=None,
        )
        .returning(
            runs.attempt,
            _seconds(func.coalesce(runs.sent_at, runs.created_at), runs.heartbeat_at).label(
                "waited"
            ),
        )
        .cte("claimed")
    )
    totals = add_totals(claimed, histogram_rows(QUEUE_WAIT, claimed.c.waited))
    return select(claimed.c.attempt).add_cte(totals.cte("totals"))


@functools.cache
def _finish_statement(success: bool, with_evaluation: bool, with_model: bool) -> Select[tuple[int]]:
    """`finish` on PostgreSQL, built once a shape with bound parameters: WITH the fenced UPDATE
    that ends the run (for success, only while no cancel was accepted), the drop of its
    checkpoint, the upserts of its evaluation and model, and the finished count and time on
    workers from its RETURNING. Returns the run's id, or no row when the fence refused."""
    run_table, checkpoint_table = _table(Run), _table(Checkpoint)
    runs = run_table.c
    fence = _bound_fence()
    if success:
        fence = fence & runs.cancel_requested.is_(False)
    ended = (
        update(run_table)
        .where(fence)
        .values(
            status=_bound("finish_status", runs.status),
            finished_at=db_now(),
            test_loss=_bound("test_loss", runs.test_loss),
            test_accuracy=_bound("test_accuracy", runs.test_accuracy),
            error=_bound("error", runs.error),
            lease_expires_at=None,
            handover_requested=False,
        )
        .returning(
            runs.id, runs.started_at, _seconds(runs.started_at, runs.finished_at).label("took")
        )
        .cte("ended")
    )
    rows = [
        (RUNS_FINISHED, cast(bindparam("finish_label", type_=String()), String()), literal(1.0)),
        *histogram_rows(RUN_DURATION, ended.c.took),
    ]
    started = ended.c.started_at.is_not(None)
    writes = [
        delete(checkpoint_table)
        .where(checkpoint_table.c.run_id.in_(select(ended.c.id)))
        .cte("dropped"),
        add_totals(ended, rows, {name: started for name, _, _ in rows[1:]}).cte("totals"),
    ]
    if with_evaluation:
        fields = ["confusion_matrix", "per_class_accuracy", "misclassified"]
        writes.append(_upsert_from(ended, _table(Evaluation), None, fields, None).cte("evaluation"))
    if with_model:
        kept = ["keras_file", "size"]
        writes.append(
            _upsert_from(ended, _table(TrainedModel), None, kept, "saved_at").cte("model")
        )
    return select(ended.c.id).add_cte(*writes)


def _bound(name: str, column: Any) -> Any:
    """A parameter for `column`'s value, typed and cast: PostgreSQL cannot tell the type of a
    NULL in an INSERT's SELECT list."""
    return cast(bindparam(name, type_=column.type), column.type)


def _table(model: type[Any]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def last_checkpoint(session: Session, run_id: int) -> Checkpoint | None:
    """The run's checkpoint (its last finished epoch), if one was saved."""
    return session.get(Checkpoint, run_id)


def resume_point(session: Session, lease: Lease) -> Checkpoint | None:
    """The checkpoint a new attempt resumes from. A first attempt has none to read: a checkpoint
    is written under a lease, and every claim numbers its attempt one higher."""
    return last_checkpoint(session, lease.run_id) if lease.attempt > 1 else None


def drop_checkpoint(session: Session, run_id: int) -> None:
    """What every end of a run drops: its checkpoint (the final model is kept apart)."""
    session.execute(delete(Checkpoint).where(Checkpoint.run_id == run_id))


def finish(
    session: Session | Connection,
    lease: Lease,
    status: RunStatus,
    *,
    test_loss: float | None = None,
    test_accuracy: float | None = None,
    error: str | None = None,
    evaluation: dict[str, Any] | None = None,
    keras_file: bytes | None = None,
) -> None:
    """End the run as this attempt's holder. Success also needs no cancel accepted meanwhile.

    Raises LeaseLost, or CancelRequested when a cancel came in before success was written.

    On PostgreSQL the whole end is one statement (`_finish_statement`), as an epoch write is.
    """
    if _dialect(session) == "postgresql":
        parameters: dict[str, Any] = {
            **_lease_parameters(lease),
            **shard_parameter(),
            "finish_status": status,
            "finish_label": status.value,
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
            "error": error,
        }
        if evaluation is not None:
            parameters |= evaluation
        if keras_file is not None:
            parameters |= {"keras_file": keras_file, "size": len(keras_file)}
        statement = _finish_statement(
            status == RunStatus.SUCCEEDED, evaluation is not None, keras_file is not None
        )
        done = session.execute(statement, parameters).first()
        _expire_loaded(session, lease.run_id)
        if done is None:
            raise _why_refused(session, lease)
        return
    assert isinstance(session, Session), "a multi-statement write needs a unit of work"
    condition = _held(lease)
    if status == RunStatus.SUCCEEDED:
        condition = condition & Run.cancel_requested.is_(False)
    ended = session.execute(
        update(Run)
        .where(condition)
        .values(
            status=status,
            finished_at=db_now(),
            test_loss=test_loss,
            test_accuracy=test_accuracy,
            error=error,
            lease_expires_at=None,
            handover_requested=False,
        )
        .returning(Run.started_at, Run.finished_at)
    ).one_or_none()
    if ended is None:
        raise _why_refused(session, lease)
    started_at, finished_at = ended
    count_finished(session, status, started_at, finished_at)
    drop_checkpoint(session, lease.run_id)
    if evaluation is not None:
        session.merge(Evaluation(run_id=lease.run_id, **evaluation))
    if keras_file is not None:
        session.merge(
            TrainedModel(run_id=lease.run_id, keras_file=keras_file, size=len(keras_file))
        )


def count_finished(
    session: Session, status: RunStatus, started_at: datetime | None, finished_at: datetime | None
) -> None:
    """Count a run that ended, and its time on workers when it had started (both times the
    database's)."""
    count(session, RUNS_FINISHED, status)
    if started_at is not None:
        observe(session, RUN_DURATION, seconds_between(started_at, finished_at))


def requeue_values() -> dict[str, Any]:
    return {
        "status": RunStatus.QUEUED,
        "worker": None,
        "worker_pid": None,
        "lease_expires_at": None,
        "handover_requested": False,
        "sends": Run.sends + 1,
        "sent_at": db_now(),
    }


def release(session: Session, lease: Lease) -> str:
    """Hand the run back to the queue (its worker is shutting down); not a lost attempt.

    Returns the queue to send its new message to, after the commit. Raises LeaseLost, or
    CancelRequested when a cancel came first (then the holder ends it cancelled).
    """
    released = session.execute(
        update(Run).where(_held(lease), Run.cancel_requested.is_(False)).values(**requeue_values())
    )
    if rows_changed(released) != 1:
        raise _why_refused(session, lease)
    count(session, HANDOVERS)
    queue = session.scalar(select(Run.queue).where(Run.id == lease.run_id))
    return queue or "training"
