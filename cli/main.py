"""`trainyard`: run the stack (up, web, worker, cluster), migrate (db), and talk to a server."""

from __future__ import annotations

import logging
import os

import click

from cli import dbadmin, remote
from cli import search as _search  # noqa: F401 (registers `study search`)
from cli.cluster import cluster, cluster_commands, cluster_settings, workers_option
from cli.predict import predict
from cli.purge import purge
from cli.studies import study
from cli.supervisor import run_together, web_command, worker_command
from shared.config import child_env, get_settings
from shared.cpus import available_cpus

logger = logging.getLogger("trainyard")


def require_migrated() -> None:
    """Stop with a clear message unless the database is at the latest revision."""
    from shared.domain.errors import NotMigrated
    from shared.store.engine import make_engine
    from shared.store.migrate import check_schema

    engine = make_engine(get_settings().database_url)
    try:
        check_schema(engine)
    except NotMigrated as exc:
        raise click.ClickException(exc.message) from None
    finally:
        engine.dispose()


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """trainyard: queue TensorFlow MNIST training jobs, run them on workers, compare the results."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)


@main.group()
def db() -> None:
    """Database schema migrations."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Upgrade the results store to REVISION (default: the latest)."""
    from shared.store.migrate import upgrade

    upgrade(get_settings().database_url, revision)
    click.echo(f"database at {revision}")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Downgrade the results store to REVISION ('base' empties it)."""
    from shared.store.migrate import downgrade

    downgrade(get_settings().database_url, revision)
    click.echo(f"database at {revision}")


@db.command("current")
def db_current() -> None:
    """Print the revision the database is at, and the code's latest."""
    from shared.store.engine import make_engine
    from shared.store.migrate import current_revision, head_revision

    engine = make_engine(get_settings().database_url)
    click.echo(f"database: {current_revision(engine) or 'not migrated'}; code: {head_revision()}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--processes", default=2, show_default=True, type=int, help="gunicorn processes")
def web(host: str, port: int, processes: int) -> None:
    """Serve the dashboard and the API with gunicorn."""
    require_migrated()
    share_request_metrics(port)
    command = web_command(host, port, processes)
    os.execv(command[0], command)


def share_request_metrics(port: int) -> None:
    """Give gunicorn's processes one folder to add their request counts up in (/metrics), emptied
    of a previous server's files: PROMETHEUS_MULTIPROC_DIR if set, else one under the home."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str(
        get_settings().home / "prometheus" / f"web-{port}"
    )
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith(".db"):
            os.unlink(os.path.join(folder, name))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder


@main.command()
@click.option(
    "--concurrency", default=None, type=click.IntRange(1, 64), help="Jobs run at once (setting)."
)
@click.option("--hostname", default=None, help="Celery node name, e.g. w1@%h.")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(concurrency: int | None, hostname: str | None, loglevel: str) -> None:
    """Run a Celery worker that trains queued runs."""
    require_migrated()
    settings = get_settings()
    if concurrency is not None:
        settings = settings.with_overrides(concurrency=concurrency)
    command = worker_command(settings, hostname, loglevel)
    # The pool processes read the same settings, concurrency included, from this environment.
    os.execve(command[0], command, child_env(settings))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@workers_option
def up(host: str, port: int, workers: int | None) -> None:
    """Migrate, then run the web app and a single-job worker per CPU (the layout that gives the
    most jobs an hour, see bench.throughput); Ctrl-C stops everything."""
    from shared.ops.celery_config import declare_embedded_queue
    from shared.store.migrate import upgrade

    workers = workers or available_cpus()
    settings = cluster_settings(get_settings(), workers)
    upgrade(settings.database_url)
    declare_embedded_queue(settings)
    click.echo(
        f"trainyard: dashboard on http://{host}:{port}/  (Ctrl-C stops everything)", err=True
    )
    # The cluster's processes, with one web process: the CPUs are the workers'.
    commands = cluster_commands(workers, host, port, processes=1)
    code = run_together(commands, env=child_env(settings))
    raise SystemExit(code)


main.add_command(cluster)
dbadmin.register(db)
main.add_command(study)
main.add_command(predict)
remote.register(main)
remote.runs.add_command(purge)

if __name__ == "__main__":
    main()
