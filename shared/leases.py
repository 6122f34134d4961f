"""A run's lease: the claim that makes one worker attempt its holder, the fenced writes the attempt
makes under it, and the sweeps that take a run back from a holder that stopped answering.

The store is the truth and the broker only wakes workers up. A claim turns a queued run into a
running one under a new attempt number; every later write of that attempt (epochs, checkpoint,
heartbeat, final status) is an UPDATE conditional on the run still running under that attempt. A
write that matches no row means the lease is gone: the attempt stops and writes nothing more. The
sweeps use the same conditions, so a holder and a sweep can never both win.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.domain.lease import CancelRequested, EpochRecord, Lease, LeaseLost, Signals
from shared.domain.status import RunStatus
from shared.models import Checkpoint, Epoch, Evaluation, Run, TrainedModel, Worker, utcnow

logger = logging.getLogger(__name__)


def _held(lease: Lease) -> Any:
    """The condition every fenced write carries: the run still running under this attempt."""
    return (
        (Run.id == lease.run_id)
        & (Run.attempt == lease.attempt)
        & (Run.status == RunStatus.RUNNING)
    )


def _renewal(lease: Lease, now: datetime) -> dict[str, Any]:
    return {"heartbeat_at": now, "lease_expires_at": now + timedelta(seconds=lease.seconds)}


def claim(
    session: Session, run_id: int, worker: str, pid: int, seconds: float, node_pid: int = 0
) -> Lease | None:
    """Atomically make a queued run ours under a new attempt; None when it is not queued, or when
    our node (main process `node_pid`) is leaving (see `leaving`).

    A message for a run that is running, finished or cancelled is simply dropped: the holder has
    it, or nobody needs it, and the sweeps send a new message whenever a queued run lacks one.
    """
    now = utcnow()
    result = session.execute(
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
            started_at=func.coalesce(Run.started_at, now),
            heartbeat_at=now,
            lease_expires_at=now + timedelta(seconds=seconds),
            handover_requested=False,
            error=None,
        )
    )
    if result.rowcount != 1:
        return None
    # Our own UPDATE holds the row (or SQLite's write lock) until commit: this read is ours.
    attempt = session.scalar(select(Run.attempt).where(Run.id == run_id))
    assert attempt is not None
    return Lease(run_id, attempt, worker, seconds)


def _leaving(worker: str, node_pid: int) -> Any:
    return select(Worker.id).where(
        Worker.name == worker, Worker.pid == node_pid, Worker.stopped_at.is_not(None)
    )


def leaving(session: Session, worker: str, node_pid: int) -> bool:
    """Whether a worker node is shutting down: it finishes or hands over what it holds and takes
    no new run. A warm shutdown may still pass a message to the node's pool for a moment (a
    polling broker's last fetch); that claim is refused and the message sent on to another node."""
    return session.scalar(_leaving(worker, node_pid).exists().select()) or False


def _why_refused(session: Session, lease: Lease) -> Exception:
    """Tell a lost lease from a cancel the holder must honour."""
    row = session.execute(
        select(Run.status, Run.attempt, Run.cancel_requested).where(Run.id == lease.run_id)
    ).one_or_none()
    if row is not None and (row.status, row.attempt) == (RunStatus.RUNNING, lease.attempt):
        return CancelRequested(lease)
    return LeaseLost(lease)


def renew(session: Session, lease: Lease) -> Signals:
    """Extend the lease; return what the holder is asked to do. Raises LeaseLost."""
    result = session.execute(update(Run).where(_held(lease)).values(**_renewal(lease, utcnow())))
    if result.rowcount != 1:
        raise LeaseLost(lease)
    cancel, handover = session.execute(
        select(Run.cancel_requested, Run.handover_requested).where(Run.id == lease.run_id)
    ).one()
    return Signals(bool(cancel), bool(handover))


def record_environment(session: Session, lease: Lease, environment: dict[str, str]) -> None:
    """Store the versions and dataset checksum that make the run reproducible. Raises LeaseLost."""
    values = {**environment, **_renewal(lease, utcnow())}
    if session.execute(update(Run).where(_held(lease)).values(**values)).rowcount != 1:
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
    session: Session, lease: Lease, record: EpochRecord, checkpoint: bytes | None = None
) -> None:
    """Record a finished epoch and its checkpoint, in one unit with the lease's renewal.

    The run row is updated first and only while this attempt holds it with no cancel accepted;
    that UPDATE also orders the write against a concurrent cancel or sweep (the row is locked
    until commit), so no epoch lands after either. Raises LeaseLost or CancelRequested.
    """
    now = utcnow()
    progressed = session.execute(
        update(Run)
        .where(_held(lease), Run.cancel_requested.is_(False))
        .values(epochs_done=record.epoch, **_renewal(lease, now))
    )
    if progressed.rowcount != 1:
        raise _why_refused(session, lease)
    row = {**dataclasses.asdict(record), "run_id": lease.run_id, "attempt": lease.attempt}
    _upsert(session, Epoch, ["run_id", "epoch"], {**row, "recorded_at": now})
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
                "saved_at": now,
            },
        )


def last_checkpoint(session: Session, run_id: int) -> Checkpoint | None:
    """The run's checkpoint (its last finished epoch), if one was saved."""
    return session.get(Checkpoint, run_id)


def _end(session: Session, run_id: int) -> None:
    """What every end of a run drops: its checkpoint (the final model is kept apart)."""
    session.execute(Checkpoint.__table__.delete().where(Checkpoint.run_id == run_id))


def finish(
    session: Session,
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
    """
    condition = _held(lease)
    if status == RunStatus.SUCCEEDED:
        condition = condition & Run.cancel_requested.is_(False)
    ended = session.execute(
        update(Run)
        .where(condition)
        .values(
            status=status,
            finished_at=utcnow(),
            test_loss=test_loss,
            test_accuracy=test_accuracy,
            error=error,
            lease_expires_at=None,
            handover_requested=False,
        )
    )
    if ended.rowcount != 1:
        raise _why_refused(session, lease)
    _end(session, lease.run_id)
    if evaluation is not None:
        session.merge(Evaluation(run_id=lease.run_id, **evaluation))
    if keras_file is not None:
        session.merge(
            TrainedModel(run_id=lease.run_id, keras_file=keras_file, size=len(keras_file))
        )


def _requeue_values(now: datetime) -> dict[str, Any]:
    return {
        "status": RunStatus.QUEUED,
        "worker": None,
        "worker_pid": None,
        "lease_expires_at": None,
        "handover_requested": False,
        "sends": Run.sends + 1,
        "sent_at": now,
    }


def release(session: Session, lease: Lease) -> str:
    """Hand the run back to the queue (its worker is shutting down); not a lost attempt.

    Returns the queue to send its new message to, after the commit. Raises LeaseLost, or
    CancelRequested when a cancel came first (then the holder ends it cancelled).
    """
    released = session.execute(
        update(Run)
        .where(_held(lease), Run.cancel_requested.is_(False))
        .values(**_requeue_values(utcnow()))
    )
    if released.rowcount != 1:
        raise _why_refused(session, lease)
    queue = session.scalar(select(Run.queue).where(Run.id == lease.run_id))
    return queue or "training"


def take_back(
    session: Session, run: Run, reason: str, max_attempts: int, if_expired: bool = True
) -> bool:
    """Take a running run from a holder that stopped answering: requeue it while attempts
    remain, else fail it naming each lost attempt; a cancelled one ends cancelled.

    Conditional on the run still being held by that attempt (and, with `if_expired`, on its lease
    having run out), so it changes nothing a live holder renewed or another sweep already changed.
    Returns True when the run was requeued (the caller sends its message after the commit).
    """
    now = utcnow()
    lost = [
        *run.lost_attempts,
        {"attempt": run.attempt, "worker": run.worker, "reason": reason, "at": now.isoformat()},
    ]
    held = (Run.id == run.id) & (Run.attempt == run.attempt) & (Run.status == RunStatus.RUNNING)
    if if_expired:
        held = held & (Run.lease_expires_at < now)
    if run.cancel_requested:
        values: dict[str, Any] = {"status": RunStatus.CANCELLED, "finished_at": now}
    elif len(lost) >= max_attempts:
        values = {"status": RunStatus.FAILED, "finished_at": now, "error": _gave_up(lost)}
    else:
        values = _requeue_values(now)
    changed = session.execute(
        update(Run)
        .where(held)
        .values(**{"lease_expires_at": None, **values, "lost_attempts": lost})
    )
    if changed.rowcount != 1:
        return False
    if values["status"] != RunStatus.QUEUED:
        _end(session, run.id)
    logger.warning(
        "run %s attempt %s on %s lost (%s): %s",
        run.id,
        run.attempt,
        run.worker,
        reason,
        values["status"].value if isinstance(values["status"], RunStatus) else values["status"],
    )
    return values["status"] == RunStatus.QUEUED


def _gave_up(lost: list[dict[str, Any]]) -> str:
    attempts = "; ".join(f"attempt {x['attempt']} on {x['worker']}: {x['reason']}" for x in lost)
    return f"gave up after {len(lost)} lost attempts ({attempts})"


def expired(session: Session, now: datetime | None = None, limit: int = 100) -> list[Run]:
    """Running runs whose lease ran out, oldest first."""
    now = now or utcnow()
    statement = (
        select(Run)
        .where(Run.status == RunStatus.RUNNING, Run.lease_expires_at < now)
        .order_by(Run.lease_expires_at)
        .limit(limit)
    )
    return list(session.scalars(statement))


def held_by(session: Session, worker: str) -> list[Run]:
    """The running runs a worker node holds."""
    statement = select(Run).where(Run.status == RunStatus.RUNNING, Run.worker == worker)
    return list(session.scalars(statement))


def request_handover(session: Session, worker: str) -> int:
    """Ask every run a worker node holds to stop at its next batch and go back to the queue."""
    result = session.execute(
        update(Run)
        .where(Run.status == RunStatus.RUNNING, Run.worker == worker)
        .values(handover_requested=True)
    )
    return result.rowcount


def _aware(value: datetime) -> datetime:
    # COALESCE loses the column type, so SQLite hands back text or a naive time: read it as UTC.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def unsent(session: Session, queue: str, in_broker: int, grace: float) -> list[int]:
    """Queued runs of `queue` whose message the broker no longer has; marks each as sent again.

    Workers take messages oldest first, so when the broker holds `in_broker` messages for
    `queued` queued runs, the `queued - in_broker` runs whose last message is oldest are the ones
    without one (a broker that restarted empty, a lost write). Only those last sent more than
    `grace` seconds ago count (a message may be on its way to a worker), and each is marked with a
    conditional update, so concurrent sweeps send one copy, not one each. The caller sends them.
    """
    now = utcnow()
    queued = session.execute(
        select(Run.id, Run.sends, func.coalesce(Run.sent_at, Run.created_at).label("sent"))
        .where(Run.status == RunStatus.QUEUED, Run.queue == queue)
        .order_by(Run.sent_at.is_not(None), Run.sent_at, Run.id)
    ).all()
    missing = len(queued) - in_broker
    cutoff = now - timedelta(seconds=grace)
    marked = []
    for run_id, sends, sent in queued[: max(0, missing)]:
        if _aware(sent) > cutoff:
            continue
        resent = session.execute(
            update(Run)
            .where(Run.id == run_id, Run.status == RunStatus.QUEUED, Run.sends == sends)
            .values(sends=sends + 1, sent_at=now)
        )
        if resent.rowcount == 1:
            marked.append(run_id)
    return marked
