"""PostgreSQL for the cluster: wait until the server takes connections, and a least-privilege role.

The compose `migrate` service connects as the owner of the schema (`POSTGRES_USER`), upgrades it,
then calls `grant_app_role`, so that `web` and `worker` connect as a role that reads and writes
rows and nothing more: no CREATE, ALTER, DROP or TRUNCATE, and the schema revision read-only.
"""

from __future__ import annotations

import logging
import re
import time

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

logger = logging.getLogger(__name__)

# A role or schema name we create: an unquoted PostgreSQL identifier, lower case, at most 63 bytes.
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# pg_advisory_xact_lock key: two `migrate` runs at once take turns instead of racing on CREATE ROLE.
LOCK_KEY = 0x7472_6169_6E79  # "trainy"
ROW_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
SEQUENCE_PRIVILEGES = "USAGE, SELECT"
# Web and workers check the revision (they refuse a database behind the code) but never move it.
REVISION_TABLE = "alembic_version"


def checked_identifier(name: str, what: str = "role") -> str:
    """Return `name` when it is a plain lower-case identifier; raise ValueError otherwise."""
    if not IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"{what} name {name!r} must be 1-63 lower-case letters, digits and underscores, "
            "not starting with a digit"
        )
    return name


def _quoted(name: str) -> str:
    # Identifiers cannot be bound parameters; names are checked above, and quoted all the same.
    return '"' + name.replace('"', '""') + '"'


def wait_for_database(database_url: str, timeout: float, interval: float = 1.0) -> float:
    """Connect until the server accepts a connection; return the seconds it took.

    Every failure is retried until `timeout` (the official PostgreSQL image refuses network
    connections while it initialises, then restarts); after that, raise TimeoutError with the last
    error.
    """
    url = make_url(database_url)
    connect_args = {"connect_timeout": 5} if url.get_backend_name() == "postgresql" else {}
    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    shown = url.render_as_string(hide_password=True)
    started = time.monotonic()
    attempts = 0
    try:
        while True:
            attempts += 1
            try:
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
                waited = time.monotonic() - started
                logger.info("%s accepts connections (%.1f s, attempt %d)", shown, waited, attempts)
                return waited
            except OperationalError as exc:
                reason = str(exc.orig or exc).strip().splitlines()[0]
                if time.monotonic() - started + interval > timeout:
                    raise TimeoutError(
                        f"{shown} did not accept a connection in {timeout:.0f} s "
                        f"({attempts} attempts); last error: {reason}"
                    ) from None
                logger.info("waiting for %s: %s", shown, reason)
                time.sleep(interval)
    finally:
        engine.dispose()


def _execute(connection: Connection, statement: str) -> None:
    """Send a statement to the driver as written, without parameters, in the connection's
    transaction: no placeholder parsing of `%` and `:` in names or in format() patterns."""
    cursor = connection.connection.cursor()
    try:
        cursor.execute(statement)
    finally:
        cursor.close()


def _password_verifier(connection: Connection, role: str, password: str) -> str:
    """The SCRAM verifier of the password, computed here, so the password never reaches the
    server (nor its statement log); the password itself when the driver cannot compute one."""
    driver_connection = connection.connection.driver_connection
    pgconn = getattr(driver_connection, "pgconn", None)  # psycopg 3
    if pgconn is None:
        return password
    # algorithm None: the server's password_encryption (scram-sha-256 unless set otherwise).
    encrypted: bytes = pgconn.encrypt_password(password.encode(), role.encode(), None)
    return encrypted.decode()


def _set_password(connection: Connection, role: str, password: str) -> None:
    # ALTER ROLE takes no bound parameters; the server quotes both values with format(%I, %L),
    # reading them from transaction-local settings that were bound as parameters.
    connection.execute(
        text(
            "SELECT set_config('trainyard.role', :role, true), "
            "set_config('trainyard.password', :password, true)"
        ),
        {"role": role, "password": _password_verifier(connection, role, password)},
    )
    _execute(
        connection,
        "DO $$ BEGIN EXECUTE format("
        "'ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
        "NOBYPASSRLS INHERIT PASSWORD %L', "
        "current_setting('trainyard.role'), current_setting('trainyard.password')); END $$",
    )
    connection.execute(text("SELECT set_config('trainyard.password', '', true)"))


def grant_app_role(
    connection: Connection, role: str, password: str, schema: str = "public"
) -> bool:
    """Make `role` a login role with only what web and workers need; return whether it was new.

    Run it as the owner of `schema` (the role migrations run as), after upgrading: the role gets
    CONNECT on this database, USAGE on the schema, SELECT/INSERT/UPDATE/DELETE on its tables
    (SELECT only on the revision table), USAGE/SELECT on its sequences, the same on tables and
    sequences the owner creates later, and nothing else: other privileges and role memberships it
    had are revoked. PUBLIC loses CREATE on the schema and every privilege on the database (so no
    role gets TEMPORARY through it; another role needs its own GRANT CONNECT). The password is set
    every time (so changing it in .env takes effect). Idempotent; the caller owns the transaction.
    """
    checked_identifier(role)
    checked_identifier(schema, "schema")
    if not password:
        raise ValueError(f"the password of role {role} is empty")
    owner, database = connection.execute(text("SELECT current_user, current_database()")).one()
    if role == owner:
        raise ValueError(f"the application role must not be {owner}, the role that owns the schema")
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})

    created = not connection.scalar(
        text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}
    )
    if created:
        _execute(connection, f"CREATE ROLE {_quoted(role)}")
    _set_password(connection, role, password)
    owned = connection.scalar(
        text("SELECT count(*) FROM pg_class WHERE relowner = to_regrole(:role)"), {"role": role}
    )
    if owned:
        raise RuntimeError(
            f"role {role} owns {owned} tables or sequences, so it could drop them; give them to "
            f"the schema's owner first: REASSIGN OWNED BY {role} TO {owner}"
        )
    memberships = connection.scalars(
        text("SELECT roleid::regrole::text FROM pg_auth_members WHERE member = to_regrole(:role)"),
        {"role": role},
    ).all()

    app, schema_q, database_q, owner_q = (
        _quoted(role),
        _quoted(schema),
        _quoted(database),
        _quoted(owner),
    )
    statements = [
        *(f"REVOKE {granted} FROM {app}" for granted in memberships),  # regrole text is quoted
        f"REVOKE ALL ON DATABASE {database_q} FROM PUBLIC",
        f"REVOKE ALL ON DATABASE {database_q} FROM {app}",
        f"GRANT CONNECT ON DATABASE {database_q} TO {app}",
        f"REVOKE CREATE ON SCHEMA {schema_q} FROM PUBLIC",
        f"REVOKE ALL ON SCHEMA {schema_q} FROM {app}",
        f"GRANT USAGE ON SCHEMA {schema_q} TO {app}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema_q} FROM {app}",
        f"GRANT {ROW_PRIVILEGES} ON ALL TABLES IN SCHEMA {schema_q} TO {app}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema_q} FROM {app}",
        f"GRANT {SEQUENCE_PRIVILEGES} ON ALL SEQUENCES IN SCHEMA {schema_q} TO {app}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner_q} IN SCHEMA {schema_q} "
        f"GRANT {ROW_PRIVILEGES} ON TABLES TO {app}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner_q} IN SCHEMA {schema_q} "
        f"GRANT {SEQUENCE_PRIVILEGES} ON SEQUENCES TO {app}",
    ]
    revision = connection.scalar(
        text("SELECT to_regclass(:name)"), {"name": f"{schema}.{REVISION_TABLE}"}
    )
    if revision is not None:
        table = f"{schema_q}.{_quoted(REVISION_TABLE)}"
        statements.append(f"REVOKE INSERT, UPDATE, DELETE ON {table} FROM {app}")
    for statement in statements:
        _execute(connection, statement)
    logger.info(
        "%s role %s: read and write rows in schema %s of %s",
        "created" if created else "updated",
        role,
        schema,
        database,
    )
    return created
