"""Every migration upgrades an empty SQLite and PostgreSQL to the models' schema and downgrades back."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError

from shared.db import make_engine
from shared.migrate import current_revision, downgrade, head_revision, upgrade
from shared.models import Base

# The server the PostgreSQL case creates its throwaway database on.
PG_SERVER = os.environ.get(
    "TRAINYARD_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
MODEL_TABLES = set(Base.metadata.tables)


def postgres_database() -> Iterator[str]:
    """Create an empty database on PG_SERVER; drop it afterwards."""
    server = make_url(PG_SERVER)
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"trainyard_migrations_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        if "TRAINYARD_TEST_DATABASE_URL" in os.environ:
            raise
        pytest.skip(f"no PostgreSQL at {server.render_as_string()}: {exc}")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        yield from postgres_database()


@pytest.fixture()
def engine(empty_url: str) -> Iterator[Engine]:
    engine = make_engine(empty_url)
    yield engine
    engine.dispose()


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def schema_differences(engine: Engine) -> list[object]:
    """What autogenerate would write to bring the database to the models (nothing, ideally)."""
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def test_upgrade_from_empty_matches_the_models(empty_url: str, engine: Engine) -> None:
    assert tables(engine) == set()
    upgrade(empty_url)
    assert tables(engine) == MODEL_TABLES | {"alembic_version"}
    assert current_revision(engine) == head_revision()
    assert schema_differences(engine) == []


def test_downgrade_step_by_step_to_empty_then_up_again(empty_url: str, engine: Engine) -> None:
    upgrade(empty_url)
    steps = 0
    while current_revision(engine) is not None:
        downgrade(empty_url, "-1")  # each revision's downgrade on its own
        steps += 1
        assert steps < 100, "downgrade does not reach base"
    assert tables(engine) - {"alembic_version"} == set()
    upgrade(empty_url)
    assert tables(engine) == MODEL_TABLES | {"alembic_version"}
    assert schema_differences(engine) == []
