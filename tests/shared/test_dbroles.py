"""shared/ops/dbroles.py and its commands on the machine's PostgreSQL: the application role the
compose web and workers connect as reads and writes rows, and cannot touch the schema."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from shared.domain.status import RunStatus
from shared.ops import dbroles
from shared.ops.dbroles import grant_app_role, wait_for_database
from shared.ops.pgadmin import scratch_database
from shared.store.engine import Store
from shared.store.migrate import check_schema, upgrade
from shared.store.models import Epoch, Run
from shared.store.workers import register_worker
from tests.builders import EVALUATION, make_run
from tests.support.machine import PG_SERVER, ROOT, postgres_problem
from tests.support.processes import free_port

INSUFFICIENT_PRIVILEGE = "42501"
PASSWORD = "pw'with\"quotes:%s;--"  # what a careless quoting would break on


pytestmark = pytest.mark.skipif(
    (problem := postgres_problem()) is not None, reason=problem or "PostgreSQL is reachable"
)


@dataclass
class Database:
    owner_url: str  # the role migrations run as (the server's superuser here)
    role: str

    def app_url(self, password: str = PASSWORD) -> str:
        url = make_url(self.owner_url).set(username=self.role, password=password)
        return url.render_as_string(hide_password=False)

    def grant(self, password: str = PASSWORD) -> bool:
        engine = create_engine(self.owner_url)
        try:
            with engine.begin() as connection:
                return grant_app_role(connection, self.role, password)
        finally:
            engine.dispose()

    def as_owner(self, statement: str) -> None:
        engine = create_engine(self.owner_url)
        try:
            with engine.begin() as connection:
                connection.exec_driver_sql(statement)
        finally:
            engine.dispose()

    def verifier(self) -> str:
        engine = create_engine(self.owner_url)
        try:
            with engine.connect() as connection:
                return connection.scalar(
                    text("SELECT rolpassword FROM pg_authid WHERE rolname = :r"), {"r": self.role}
                )
        finally:
            engine.dispose()


@pytest.fixture()
def database() -> Iterator[Database]:
    """A migrated throwaway database and the name of a role that does not exist yet; the role is
    dropped after the database (roles are the server's, not the database's)."""
    role = f"trainyard_app_{uuid.uuid4().hex[:8]}"
    try:
        with scratch_database(PG_SERVER, "trainyard_roles") as url:
            upgrade(url)
            yield Database(url, role)
    finally:
        engine = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
        engine.dispose()


def refused(url: str, statement: str) -> str:
    """Run `statement` as the URL's role and return the SQLSTATE it failed with."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(statement)
    except DBAPIError as exc:
        return getattr(exc.orig, "sqlstate", "") or ""
    finally:
        engine.dispose()
    raise AssertionError(f"{statement!r} succeeded as {make_url(url).username}")


def test_the_app_role_reads_and_writes_rows_as_a_worker_and_the_web_do(database: Database) -> None:
    assert database.grant() is True
    store = Store(database.app_url())
    try:
        check_schema(store.engine)  # what web and worker do before they start
        with store.session_scope() as session:
            register_worker(session, "worker@test", "test", pid=1, concurrency=1)
            done = make_run(
                session,
                status=RunStatus.SUCCEEDED,
                epochs_done=2,
                test_accuracy=0.9,
                test_loss=0.3,
                evaluation=EVALUATION,
            )
            doomed = make_run(session)
        with store.session_scope() as session:
            session.delete(session.get(Run, doomed.id))
        with store.session_scope() as session:
            assert session.scalars(select(Run.id)).all() == [done.id]
            assert len(session.scalars(select(Epoch).where(Epoch.run_id == done.id)).all()) == 2
    finally:
        store.close()


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE public.intruder (id integer)",
        "DROP TABLE runs",
        "TRUNCATE runs",
        "ALTER TABLE runs ADD COLUMN intruder integer",
        "CREATE INDEX intruder ON runs (name)",
        "UPDATE alembic_version SET version_num = 'intruder'",
        "DELETE FROM alembic_version",
        "CREATE TEMPORARY TABLE intruder (id integer)",
        "CREATE SCHEMA intruder",
    ],
)
def test_the_app_role_cannot_change_the_schema(database: Database, statement: str) -> None:
    database.grant()
    assert refused(database.app_url(), statement) == INSUFFICIENT_PRIVILEGE


def test_granting_again_resets_privileges_password_and_covers_later_tables(
    database: Database,
) -> None:
    assert database.grant() is True
    first = database.verifier()
    # Never the password itself: a SCRAM verifier, computed by the client.
    assert first.startswith("SCRAM-SHA-256$") and PASSWORD not in first
    # Someone gave the role more than it needs; the next migrate takes it back.
    database.as_owner(f'GRANT TRUNCATE ON runs TO "{database.role}"')
    database.as_owner(f'GRANT pg_read_all_settings TO "{database.role}"')
    assert database.grant("a-new-password") is False
    assert database.verifier() != first
    assert refused(database.app_url(), "TRUNCATE runs") == INSUFFICIENT_PRIVILEGE
    app = create_engine(database.app_url())
    try:
        with app.connect() as connection:
            member = "SELECT pg_has_role(current_user, 'pg_read_all_settings', 'MEMBER')"
            assert connection.scalar(text(member)) is False
        # A table the owner creates in a later migration is the app's to use at once.
        database.as_owner("CREATE TABLE later (id serial PRIMARY KEY, note text)")
        with app.begin() as connection:
            connection.execute(text("INSERT INTO later (note) VALUES ('ok')"))
            assert connection.scalar(text("SELECT note FROM later")) == "ok"
    finally:
        app.dispose()


def test_the_password_reaches_the_server_quoted_when_the_driver_cannot_hash_it(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dbroles, "_password_verifier", lambda _c, _r, password: password)
    database.grant("x'; DROP ROLE postgres; --")
    assert database.verifier().startswith("SCRAM-SHA-256$")  # the server hashed it


@pytest.mark.parametrize(
    "role", ["", "App", "1app", "app-role", 'app"; DROP TABLE runs; --', "a" * 64, "postgres"]
)
def test_bad_role_names_are_refused(database: Database, role: str) -> None:
    database.role = role  # "postgres": the owner itself, which would lose the schema
    with pytest.raises(ValueError, match="role"):
        database.grant()


def test_an_empty_password_is_refused(database: Database) -> None:
    with pytest.raises(ValueError, match="password"):
        database.grant("")


def test_wait_returns_at_once_for_a_server_that_answers() -> None:
    assert wait_for_database(PG_SERVER, timeout=10) < 5


def test_wait_retries_then_gives_up_without_showing_the_password() -> None:
    closed = f"postgresql+psycopg://owner:s3cret@127.0.0.1:{free_port()}/trainyard"
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="did not accept a connection") as failure:
        wait_for_database(closed, timeout=2, interval=0.5)
    assert 1.4 < time.monotonic() - started < 10
    assert "s3cret" not in str(failure.value) and "attempts" in str(failure.value)


def command(name: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run one of cli/dbadmin.py's commands as a process, as the migrate container does."""
    code = f"from cli.dbadmin import {name}; {name}()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_commands_wait_then_grant(database: Database) -> None:
    env = {"TRAINYARD_DATABASE_URL": database.owner_url, "APP_PASSWORD": PASSWORD}
    waited = command("db_wait", "--timeout", "10", env=env)
    assert waited.returncode == 0 and "database ready" in waited.stdout, waited.stderr
    args = ["--role", database.role, "--password-env", "APP_PASSWORD"]
    granted = command("db_grant_app_role", *args, env=env)
    assert granted.returncode == 0, granted.stderr
    assert f"role {database.role} created" in granted.stdout
    assert PASSWORD not in granted.stdout + granted.stderr
    again = command("db_grant_app_role", *args, env=env)
    assert f"role {database.role} updated" in again.stdout, again.stderr
    unset = command("db_grant_app_role", *args[:-1], "NO_SUCH_VARIABLE", env=env)
    assert unset.returncode == 1 and "NO_SUCH_VARIABLE is empty or unset" in unset.stderr
    closed = {"TRAINYARD_DATABASE_URL": f"postgresql+psycopg://x@127.0.0.1:{free_port()}/x"}
    gave_up = command("db_wait", "--timeout", "1", env=closed)
    assert gave_up.returncode == 1 and "did not accept a connection" in gave_up.stderr
