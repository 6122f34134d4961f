"""`trainyard runs purge`: delete archived runs older than a given age, in batches, straight in
the database (MLflow's `gc`). It acts on TRAINYARD_DATABASE_URL."""

from __future__ import annotations

import re
from datetime import timedelta

import click

from shared.config import get_settings

AGE = re.compile(r"^([0-9]{1,6})([dhm])$")
UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_age(text: str) -> timedelta:
    """`30d`, `12h` or `90m` as a duration; BadParameter otherwise."""
    match = AGE.match(text.strip())
    if not match:
        raise click.BadParameter(f"{text!r} is not an age like 30d, 12h or 90m")
    return timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


@click.command("purge")
@click.option("--archived", is_flag=True, required=True, help="Only archived runs (required).")
@click.option("--older-than", "older_than", required=True, help="Finished longer ago: 30d, 12h.")
@click.option("--dry-run", is_flag=True, help="Say how many runs would go; delete nothing.")
@click.option("--batch", default=500, show_default=True, type=click.IntRange(1, 10_000))
def purge(archived: bool, older_than: str, dry_run: bool, batch: int) -> None:
    """Delete archived runs that finished longer ago than --older-than, with everything they own
    (a study's runs stay: delete the study). Each batch is its own transaction."""
    from shared.store.clock import now_of
    from shared.store.engine import Store
    from shared.store.history import delete_runs_rows, purgeable

    age = parse_age(older_than)
    store = Store(get_settings().database_url)
    deleted = 0
    try:
        with store.session_scope() as session:  # "older than" by the database's clock
            cutoff = now_of(session) - age
        if dry_run:
            with store.session_scope() as session:
                count = len(purgeable(session, cutoff, 10**9))
            click.echo(
                f"would delete {count} archived runs finished before {cutoff:%Y-%m-%d %H:%M} UTC"
            )
            return
        while True:
            with store.session_scope() as session:
                ids = purgeable(session, cutoff, batch)
                delete_runs_rows(session, ids)
            deleted += len(ids)
            if ids:
                click.echo(f"deleted {deleted} so far", err=True)
            if len(ids) < batch:
                break
    finally:
        store.close()
    click.echo(f"deleted {deleted} archived runs finished before {cutoff:%Y-%m-%d %H:%M} UTC")
