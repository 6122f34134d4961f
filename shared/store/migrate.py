"""Alembic, driven from code: upgrade, downgrade, and whether a database is at the head revision."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from shared.domain.errors import NotMigrated

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(database_url: str) -> Config:
    """Build an Alembic config for this project's migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Upgrade the database to `revision`."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    """Downgrade the database to `revision`."""
    command.downgrade(alembic_config(database_url), revision)


def head_revision() -> str:
    """Return the code's latest revision id."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """Return the revision the database is at, or None when it was never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def check_schema(engine: Engine) -> str:
    """Raise `NotMigrated` unless the database is at the head revision; return that revision."""
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        at = f"at revision {current}" if current else "not migrated"
        raise NotMigrated(
            f"the database {engine.url.render_as_string(hide_password=True)} is {at}; "
            f"the code needs {head}. Run `trainyard db upgrade`."
        )
    return head
