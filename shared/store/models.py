"""The results store's tables as SQLAlchemy 2.0 declarative models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeEngine

from shared.domain.params import PARAM_NAMES
from shared.domain.status import RunStatus
from shared.store.clock import UTCDateTime, db_now
from shared.store.clock import utcnow as utcnow  # this host's clock, for tests and logs

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Tags(TypeDecorator[list[str]]):
    """A run's tags: a `text[]` on PostgreSQL (a GIN index answers "has all of these"), a JSON
    list elsewhere."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.ARRAY(String(64)))
        return dialect.type_descriptor(JSON())

    def process_result_value(self, value: list[str] | None, dialect: Dialect) -> list[str]:
        return list(value or [])


# The filters a tag is combined with, in the tags' GIN index (migration 0006).
TAG_FILTER_COLUMNS = (
    "tags",
    "optimizer",
    "status",
    "normalize",
    "batch_size",
    "hidden_units",
    "learning_rate",
    "dropout",
    "study_id",
)

# The other sortable fields' (field, id) indexes (migration 0008): every sort reads in order.
SORTED_BY_INDEX = (
    "status",
    "started_at",
    "epochs_done",
    "epochs",
    "batch_size",
    "learning_rate",
    "optimizer",
    "hidden_units",
    "dropout",
    "normalize",
    "validation_split",
    "train_samples",
    "seed",
)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Run(Base):
    """One training job: what it was asked, where it ran, how it ended."""

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        Index("ix_runs_status_created_at", "status", "created_at"),
        # Each sort the lists offer on a run's own figures reads an index in order, the id
        # breaking ties as the keyset cursor does (shared/store/queries.py).
        Index("ix_runs_test_accuracy_id", "test_accuracy", "id"),
        Index("ix_runs_test_loss_id", "test_loss", "id"),
        Index("ix_runs_created_at_id", "created_at", "id"),
        Index("ix_runs_finished_at_id", "finished_at", "id"),
        Index("ix_runs_name_id", "name", "id"),
        Index("ix_runs_archived_finished_at", "archived", "finished_at"),
        *(Index(f"ix_runs_{field}_id", field, "id") for field in SORTED_BY_INDEX),
        # Tags: `tag=a,b` is `tags @> {a,b}`; `q=` a trigram match on the name. On PostgreSQL
        # the tags' GIN index also holds the common equality filters (btree_gin), so a tag with
        # any of them is one index scan, not a bitmap of a third of the table ANDed in.
        Index("ix_runs_tags_filters", *TAG_FILTER_COLUMNS, postgresql_using="gin"),
        Index(
            "ix_runs_name_trgm",
            "name",
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
        ),
        # The node's sweep: the runs one worker holds, and (reading the running runs) the leases
        # that ran out. No index holds lease_expires_at or heartbeat_at: a renewal, twice a
        # second a job, then updates the row in place (migration 0010).
        Index("ix_runs_status_worker", "status", "worker"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # What people add afterwards: labels, a note, and whether it left the default lists.
    # (The migration gives it a server default, '{}' or '[]' as the dialect writes an empty list.)
    tags: Mapped[list[str]] = mapped_column(Tags(), default=list)
    note: Mapped[str | None] = mapped_column(Text)
    archived: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    status: Mapped[RunStatus] = mapped_column(
        Enum(
            RunStatus, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]
        ),
        default=RunStatus.QUEUED,
    )

    # Hyperparameters, one typed column each so the dashboard can filter and sort on them.
    epochs: Mapped[int] = mapped_column(Integer)
    batch_size: Mapped[int] = mapped_column(Integer)
    learning_rate: Mapped[float] = mapped_column(Float)
    optimizer: Mapped[str] = mapped_column(String(16))
    hidden_units: Mapped[int] = mapped_column(Integer)
    dropout: Mapped[float] = mapped_column(Float)
    normalize: Mapped[bool] = mapped_column(Boolean)
    validation_split: Mapped[float] = mapped_column(Float)
    train_samples: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=db_now())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    # The lease: which worker (node name and pool process) holds the run under which attempt, and
    # until when. Every write a job makes is conditional on (status running, this attempt).
    worker: Mapped[str | None] = mapped_column(String(255))
    worker_pid: Mapped[int | None] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Attempts that ended with their worker lost: [{"attempt", "worker", "reason", "at"}].
    lost_attempts: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON, default=list, server_default="[]"
    )
    # Messages: the Celery queue they go to, the last task id, how many were sent and when.
    queue: Mapped[str] = mapped_column(String(255), default="training", server_default="training")
    task_id: Mapped[str | None] = mapped_column(String(64))
    sends: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Its worker is shutting down: stop at the next batch and put the run back in the queue.
    handover_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    test_loss: Mapped[float | None] = mapped_column(Float)
    test_accuracy: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)

    # The study this run is a replicate of, and which of its configurations it trains.
    study_id: Mapped[int | None] = mapped_column(
        ForeignKey("studies.id", ondelete="SET NULL"), index=True
    )
    config: Mapped[int | None] = mapped_column(Integer)

    # Reproducibility record: what produced these figures.
    tensorflow_version: Mapped[str | None] = mapped_column(String(32))
    keras_version: Mapped[str | None] = mapped_column(String(32))
    python_version: Mapped[str | None] = mapped_column(String(32))
    dataset_sha256: Mapped[str | None] = mapped_column(String(64))

    epoch_rows: Mapped[list[Epoch]] = relationship(
        back_populates="run", order_by="Epoch.epoch", cascade="all, delete-orphan"
    )
    evaluation: Mapped[Evaluation | None] = relationship(
        back_populates="run", cascade="all, delete-orphan"
    )
    checkpoint: Mapped[Checkpoint | None] = relationship(cascade="all, delete-orphan")
    trained_model: Mapped[TrainedModel | None] = relationship(cascade="all, delete-orphan")

    @property
    def params(self) -> dict[str, Any]:
        """The run's hyperparameters as a plain dict, in the schema's order."""
        return {name: getattr(self, name) for name in PARAM_NAMES}


class Study(Base):
    """A named set of runs: configurations (a grid or a random sample of hyperparameters over a
    base) times seed replicates, submitted as one unit and summarized with honest statistics."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=db_now(), index=True)
    # The hyperparameters every configuration starts from (seed excluded: it is the replicate).
    base_params: Mapped[dict[str, Any]] = mapped_column(JSON)
    # How the configurations were made: {"grid": {...}} or {"sample": {...}}, as submitted.
    design: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The hyperparameters that vary, and each configuration's values of them, in order.
    varied: Mapped[list[str]] = mapped_column(JSON)
    configs: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # Replicate k of every configuration trains with seed first_seed + k.
    first_seed: Mapped[int] = mapped_column(Integer)
    replicates: Mapped[int] = mapped_column(Integer)
    # A search (shared.domain.search.SearchSpec): its trials are asked one by one, as slots free.
    search: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # searching -> testing (the best is chosen, its test accuracy not read yet) -> done; or
    # cancelled. None for a grid or sample study.
    search_state: Mapped[str | None] = mapped_column(String(16), index=True)
    best_run_id: Mapped[int | None] = mapped_column(Integer)
    # When a worker took the best's test evaluation on (another one may after a while).
    test_claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Epoch(Base):
    """One epoch's metrics, written the moment the epoch ends."""

    __tablename__ = "epochs"
    __table_args__ = (UniqueConstraint("run_id", "epoch"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)
    loss: Mapped[float] = mapped_column(Float)
    accuracy: Mapped[float] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    val_accuracy: Mapped[float | None] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=db_now())
    # The attempt that wrote it: a resumed run may compute its last epoch again.
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    run: Mapped[Run] = relationship(back_populates="epoch_rows")


class Checkpoint(Base):
    """A running run's last finished epoch: weights, optimizer state and the epoch number, so any
    worker on any host can resume it. One a run, overwritten each epoch, removed when it ends."""

    __tablename__ = "checkpoints"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    state: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=db_now())


class TrainedModel(Base):
    """A succeeded run's final model as a `.keras` file (it takes raw 0-255 pixels)."""

    __tablename__ = "trained_models"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    keras_file: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=db_now())


class Evaluation(Base):
    """A finished run's test-set evaluation: confusion matrix, per-class accuracy, sample errors."""

    __tablename__ = "evaluations"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    # confusion[true][predicted] counts over the 10,000 test images.
    confusion_matrix: Mapped[list[list[int]]] = mapped_column(JSON)
    per_class_accuracy: Mapped[list[float]] = mapped_column(JSON)
    # Up to a few dozen misclassified test digits: index, label, predicted, base64 of 784 pixels.
    misclassified: Mapped[list[dict[str, Any]]] = mapped_column(JSON)

    run: Mapped[Run] = relationship(back_populates="evaluation")


class Worker(Base):
    """A worker process that registered itself; its heartbeat says whether it is alive."""

    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    concurrency: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=db_now())
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=db_now())
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MetricTotal(Base):
    """A cluster-wide total (a counter, a histogram's bucket or sum), kept by the writes that
    change it in their own transaction, so every web process exposes the same figure."""

    __tablename__ = "metric_totals"

    # The total's name (shared/domain/metrics.py), and its one label: a status, a reason, a bucket.
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(64), primary_key=True, default="")
    # A total is the sum of its shards' rows: each transaction adds to one shard, drawn at random,
    # so the cluster's writers do not queue on one row lock (shared/store/metrics.py).
    shard: Mapped[int] = mapped_column(
        SmallInteger, primary_key=True, default=0, server_default=text("0")
    )
    value: Mapped[float] = mapped_column(Float, default=0.0)


class ClusterDuty(Base):
    """A chore the whole cluster needs done once per interval, not once per node (the sweep of
    expired leases, the look at the broker): the node that takes the row's lock does it."""

    __tablename__ = "cluster_duties"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    # When a node last did it, on the database's clock.
    last_run_at: Mapped[datetime] = mapped_column(UTCDateTime())
