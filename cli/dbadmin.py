"""`trainyard db wait` and `trainyard db grant-app-role`: what the compose `migrate` service runs
around `trainyard db upgrade`.

    trainyard db wait --timeout 120 && trainyard db upgrade \\
      && trainyard db grant-app-role --role trainyard_app --password-env TRAINYARD_APP_DB_PASSWORD

Both act on TRAINYARD_DATABASE_URL, which for `migrate` names the role that owns the schema.
"""

from __future__ import annotations

import os

import click

from shared.config import get_settings


@click.command("wait")
@click.option(
    "--timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to keep trying before giving up.",
)
def db_wait(timeout: float) -> None:
    """Wait until the database accepts connections, retrying every failure; exit 1 on timeout."""
    from shared.ops.dbroles import wait_for_database

    try:
        waited = wait_for_database(get_settings().database_url, timeout)
    except TimeoutError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"database ready after {waited:.1f} s")


@click.command("grant-app-role")
@click.option(
    "--role",
    required=True,
    help="Name of the application's role (lower-case letters, digits, underscores).",
)
@click.option(
    "--password-env",
    required=True,
    metavar="VAR",
    help="Environment variable holding the role's password (kept off the command line).",
)
@click.option("--schema", default="public", show_default=True, help="Schema of trainyard's tables.")
def db_grant_app_role(role: str, password_env: str, schema: str) -> None:
    """Create or update ROLE: it may read and write rows in the schema, and nothing else.

    Run it as the role that owns the schema (the one `trainyard db upgrade` ran as), after each
    upgrade; web and workers then connect as ROLE. It is idempotent and sets the password each time.
    """
    from shared.ops.dbroles import grant_app_role
    from shared.store.engine import make_engine

    password = os.environ.get(password_env, "")
    if not password:
        raise click.ClickException(f"{password_env} is empty or unset: it must hold the password")
    engine = make_engine(get_settings().database_url)
    if engine.dialect.name != "postgresql":
        raise click.ClickException("database roles need PostgreSQL")
    try:
        with engine.begin() as connection:
            created = grant_app_role(connection, role, password, schema)
    except (ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(f"role {role} {'created' if created else 'updated'}: rows only, in schema {schema}")


def register(db: click.Group) -> None:
    """Add these commands to the `trainyard db` group."""
    db.add_command(db_wait)
    db.add_command(db_grant_app_role)
