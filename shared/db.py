"""The database engine, sessions, and the check that the schema is at the latest revision."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from shared.config import Settings, get_settings

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

_engine: Engine | None = None
_sessionmaker: sessionmaker[Session] | None = None


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and foreign keys, so web and worker share it."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def configure(settings: Settings | None = None) -> Engine:
    """Build the process-wide engine and session factory from the settings."""
    global _engine, _sessionmaker
    settings = settings or get_settings()
    if _engine is not None:
        _engine.dispose()
    _engine = make_engine(settings.database_url)
    _sessionmaker = sessionmaker(bind=_engine, expire_on_commit=False)
    return _engine


def get_engine() -> Engine:
    """Return the process-wide engine, building it on first use."""
    if _engine is None:
        configure()
    assert _engine is not None
    return _engine


def new_session() -> Session:
    """Open a session on the process-wide engine; the caller closes it."""
    if _sessionmaker is None:
        configure()
    assert _sessionmaker is not None
    return _sessionmaker()


def dispose_engine() -> None:
    """Drop pooled connections; a forked process must not reuse its parent's sockets."""
    if _engine is not None:
        _engine.dispose(close=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """Run one unit of work: commit when the block succeeds, roll back when it raises."""
    session = new_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
