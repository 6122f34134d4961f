"""The results store: an engine, its session factory and units of work, owned by whoever made it.

The web app keeps one `Store` in `app.extensions`; each worker process builds its own after the
fork. Nothing here is process-wide, so two apps (or an app and a test) never share an engine.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    CursorResult,
    Engine,
    Result,
    Update,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)


def rows_changed(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed (its result is a cursor's, which counts them)."""
    assert isinstance(result, CursorResult)
    return result.rowcount


def forgettable(statement: Update, dialect: str) -> Update:
    """`statement`, made to commit without waiting for PostgreSQL to flush its WAL to disk:
    `synchronous_commit` off for its own transaction (an autocommit statement's), set by a
    subquery of the statement so that it is one statement still.

    For writes that a crash of the database may forget harmlessly and that come back within
    seconds: a lease's renewal or a node's heartbeat lost with the last moments before a crash
    dates that lease or heartbeat back by under a second, and the next one renews it. They are
    most of a cluster's commits (200 jobs renew 400 times a second): waiting for the flush, they
    queued every commit behind the disk's (bench.control_plane: epoch writes waited on WALWrite
    and WALSync). A write that records a result (an epoch, a status) still waits for the flush.
    """
    if dialect != "postgresql":
        return statement
    # An uncorrelated subquery: PostgreSQL evaluates it once, before the statement's rows.
    relaxed = select(func.set_config("synchronous_commit", "off", True)).scalar_subquery()
    return statement.where(relaxed.is_not(None))


def sqlite_path(url: str) -> Path | None:
    """The file a `sqlite:///` (or `sqla+sqlite:///`) URL names, or None (memory, other drivers)."""
    if "sqlite" not in url.split("://", 1)[0]:
        return None
    path = url.split("///", 1)[-1] if "///" in url else ""
    return Path(path) if path and path != ":memory:" else None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the database could not be reached or dropped the connection (a restart,
    a failover, a network blip), rather than refusing a statement."""
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError))
    )


def ping(engine: Engine) -> None:
    """Run `SELECT 1`: raise when the database cannot be reached."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def make_engine(
    url: str, *, pooler: str = "", name: str = "", connections: int | None = None
) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and foreign keys, so web and worker share it.

    On PostgreSQL: `name` is the connections' application_name (pg_stat_activity shows which
    node or job holds each); `connections` caps the pool (no overflow); `pooler="transaction"`
    turns off psycopg's server-side prepared statements, which a transaction-pooling PgBouncer
    cannot keep (the next transaction may run on another server connection). It also names no
    connection: PgBouncer would set each client's name on the server connection it lends, a
    SET before every other transaction of 200 differently named nodes and jobs, and
    pg_stat_activity shows PgBouncer's connections there anyway.
    """
    if make_url(url).get_backend_name() == "sqlite":
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {}
    if name and pooler != "transaction":
        connect_args["application_name"] = name[:63]  # PostgreSQL keeps 63 bytes
    if pooler == "transaction":
        connect_args["prepare_threshold"] = None
    options: dict[str, Any] = {}
    if connections is not None:
        options = {"pool_size": connections, "max_overflow": 0}
    # A pre-ping checks a pooled connection before each unit of work. Behind a transaction pooler
    # it checks only the link to the pooler, which outlives a database restart, and costs a round
    # trip on a server connection of its own (bench.control_plane, 200 nodes: epoch writes' p99
    # 1,075 ms with it, 544 without). Fenced writes try again while the store is unreachable.
    pre_ping = pooler != "transaction"
    return create_engine(url, pool_pre_ping=pre_ping, connect_args=connect_args, **options)


class Store:
    """One database: its engine, a session factory, and units of work on it."""

    def __init__(
        self,
        url: str,
        *,
        pooler: str = "",
        name: str = "",
        connections: int | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.url, self.pooler = url, pooler
        self.engine = engine or make_engine(url, pooler=pooler, name=name, connections=connections)
        self._sessions = sessionmaker(bind=self.engine, expire_on_commit=False)
        # The engine each sibling uses in turn, by its pool's size, and the name of the latest.
        self._siblings: dict[int, Engine] = {}
        self._sibling_name = name

    def session(self) -> Session:
        """Open a session; the caller closes it."""
        return self._sessions()

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """Run one unit of work: commit when the block succeeds, roll back when it raises."""
        session = self.session()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A connection on which each statement commits by itself: for a unit of work that is
        one statement. Through a transaction pooler the server connection is then held for that
        statement alone, with no BEGIN and COMMIT round trips around it."""
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            yield connection

    @contextmanager
    def statement_scope(self) -> Iterator[Session | Connection]:
        """A unit of work for a write that PostgreSQL takes as one statement (`record_epoch`):
        an autocommit connection there, a session (`session_scope`) elsewhere."""
        if self.engine.dialect.name == "postgresql":
            with self.autocommit() as connection:
                yield connection
        else:
            with self.session_scope() as session:
                yield session

    def forget_parent_connections(self) -> None:
        """Drop pooled connections without closing them: after a fork they are the parent's sockets."""
        self.engine.dispose(close=False)

    def sibling(self, name: str, connections: int = 1) -> Store:
        """Another store on the same database, with its own pool of `connections`, whose
        connections are named `name` (a job's; pg_stat_activity shows it). Closing it closes them.

        Siblings are used one after another (a pool process runs one job at a time) and share an
        engine: a job's statements are compiled once a process, not once a run (a new engine's
        empty cache made compiling every statement again the most of a short run's CPU)."""
        self._sibling_name = name
        engine = self._siblings.get(connections)
        if engine is None:
            engine = make_engine(self.url, pooler=self.pooler, connections=connections)
            event.listen(engine, "do_connect", self._name_sibling_connection)
            self._siblings[connections] = engine
        return Store(self.url, pooler=self.pooler, engine=engine)

    def _name_sibling_connection(
        self, _dialect: Any, _record: Any, _args: Any, params: dict[str, Any]
    ) -> None:
        if make_url(self.url).get_backend_name() != "sqlite" and self.pooler != "transaction":
            params["application_name"] = self._sibling_name[:63]  # PostgreSQL keeps 63 bytes

    def close(self) -> None:
        """Close every pooled connection (the engine stays usable: it connects again when used)."""
        self.engine.dispose()
        for engine in self._siblings.values():
            engine.dispose()
