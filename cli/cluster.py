"""`trainyard cluster`: docker-compose's topology as processes on this machine.

The service commands below are the ones `docker-compose.yml` runs; `tests/test_compose.py` holds the
two files to each other, so the processes here and the containers there cannot drift apart.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import click
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shared.config import Settings, get_settings

logger = logging.getLogger(__name__)

# The `trainyard` argument lists of the compose services (`command:` there is `trainyard` + these).
MIGRATE_ARGS = ["db", "upgrade"]
CONTAINER_PORT = 8000


def web_args(host: str = "0.0.0.0", port: int = CONTAINER_PORT) -> list[str]:
    """Arguments of `trainyard` for the web service (gunicorn; see `web_command`)."""
    return ["web", "--host", host, "--port", str(port)]


def worker_args(hostname: str = "worker@%h") -> list[str]:
    """Arguments of `trainyard` for one worker: one job at a time (Celery; see `worker_command`)."""
    return ["worker", "--concurrency", "1", "--hostname", hostname]


def trainyard(args: list[str]) -> list[str]:
    """The command line that runs `trainyard ARGS` with this interpreter."""
    return [sys.executable, "-m", "cli.main", *args]


def cluster_commands(workers: int, host: str, port: int) -> dict[str, list[str]]:
    """Return the long-running processes of a cluster: the web app and `workers` named workers."""
    commands = {"web": trainyard(web_args(host, port))}
    for number in range(1, workers + 1):
        commands[f"worker{number}"] = trainyard(worker_args(f"worker{number}@%h"))
    return commands


def ensure_database(database_url: str) -> None:
    """Create the PostgreSQL database the URL names when the server lacks it (no-op for SQLite)."""
    url = make_url(database_url)
    if not url.get_backend_name().startswith("postgresql") or not url.database:
        return
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            exists = connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            )
            if not exists:
                # Identifiers cannot be bound parameters; quote it the way PostgreSQL does.
                quoted = '"' + url.database.replace('"', '""') + '"'
                connection.execute(text(f"CREATE DATABASE {quoted}"))
                logger.info("created database %s", url.database)
    finally:
        admin.dispose()


def share_settings(settings: Settings, workers: int) -> None:
    """Export what every child process must agree on, and size TensorFlow to a share of the CPUs."""
    # gunicorn's processes each build the app: one secret for all, or CSRF tokens fail across them.
    os.environ["TRAINYARD_SECRET_KEY"] = settings.secret_key
    if not settings.tf_threads:
        # N single-job workers share this machine's CPUs instead of each taking all of them.
        from worker.training.runtime import available_cpus  # no TensorFlow: just CPU counting

        os.environ["TRAINYARD_TF_THREADS"] = str(max(1, available_cpus() // workers))


@click.command()
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
def cluster(workers: int, host: str, port: int) -> None:
    """Run the compose topology as processes: migrate, then gunicorn and WORKERS Celery workers.

    Uses TRAINYARD_DATABASE_URL and TRAINYARD_BROKER_URL (`make cluster` points them at the local
    PostgreSQL and Redis). One Ctrl-C stops everything.
    """
    from cli.main import run_together  # here, not at the top: cli.main imports this module

    settings = get_settings()
    if not settings.broker_url.startswith("redis"):
        logger.warning("broker %s is not Redis: workers will poll it slowly", settings.broker_url)
    ensure_database(settings.database_url)
    share_settings(settings, workers)
    # The compose `migrate` service: a one-shot that must succeed before anything else starts.
    migrated = subprocess.run(trainyard(MIGRATE_ARGS), check=False)
    if migrated.returncode != 0:
        raise click.ClickException("`trainyard db upgrade` failed; nothing started")
    click.echo(
        f"trainyard: cluster of {workers} worker(s), dashboard on http://{host}:{port}/ "
        "(Ctrl-C stops everything)",
        err=True,
    )
    sys.exit(run_together(cluster_commands(workers, host, port)))
