"""Creating and dropping PostgreSQL databases: for `trainyard cluster`, the tests and the benchmarks."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url

logger = logging.getLogger(__name__)


def _quoted(name: str) -> str:
    # Identifiers cannot be bound parameters; quote it the way PostgreSQL does.
    return '"' + name.replace('"', '""') + '"'


def _admin(url: URL) -> Engine:
    """An autocommit engine on the server's `postgres` database (CREATE DATABASE needs one)."""
    return create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")


def ensure_database(database_url: str) -> None:
    """Create the PostgreSQL database the URL names when the server lacks it (no-op otherwise)."""
    url = make_url(database_url)
    if not url.get_backend_name().startswith("postgresql") or not url.database:
        return
    admin = _admin(url)
    try:
        with admin.connect() as connection:
            exists = connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            )
            if not exists:
                connection.execute(text(f"CREATE DATABASE {_quoted(url.database)}"))
                logger.info("created database %s", url.database)
    finally:
        admin.dispose()


def drop_database(database_url: str) -> None:
    """Drop the database the URL names, closing its connections first."""
    url = make_url(database_url)
    admin = _admin(url)
    try:
        with admin.connect() as connection:
            name = _quoted(url.database or "")
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    finally:
        admin.dispose()


@contextmanager
def scratch_database(server_url: str, prefix: str = "trainyard_test") -> Iterator[str]:
    """A new, empty database on the server `server_url` names, dropped when the block ends."""
    url = make_url(server_url).set(database=f"{prefix}_{uuid.uuid4().hex[:10]}")
    database_url = url.render_as_string(hide_password=False)
    ensure_database(database_url)
    try:
        yield database_url
    finally:
        drop_database(database_url)
