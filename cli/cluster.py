"""`trainyard cluster`: docker-compose's topology as processes on this machine.

The service commands below are the ones `docker-compose.yml` runs; `tests/test_compose.py` holds the
two files to each other, so the processes here and the containers there cannot drift apart.
`trainyard up` runs the same processes on the embedded defaults.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import click

from cli.supervisor import run_together, trainyard
from shared.config import Settings, child_env, get_settings
from shared.cpus import available_cpus

logger = logging.getLogger(__name__)

# The `trainyard` argument lists of the compose services (`command:` there is `trainyard` + these).
MIGRATE_ARGS = ["db", "upgrade"]
CONTAINER_PORT = 8000


def web_args(
    host: str = "0.0.0.0", port: int = CONTAINER_PORT, processes: int | None = None
) -> list[str]:
    """Arguments of `trainyard` for the web service (gunicorn; see `web_command`), with
    `processes` gunicorn processes when given, else `trainyard web`'s default."""
    args = ["web", "--host", host, "--port", str(port)]
    return [*args, "--processes", str(processes)] if processes else args


def worker_args(hostname: str = "worker@%h") -> list[str]:
    """Arguments of `trainyard` for one worker: one job at a time (Celery; see `worker_command`)."""
    return ["worker", "--concurrency", "1", "--hostname", hostname]


def cluster_commands(
    workers: int, host: str, port: int, processes: int | None = None
) -> dict[str, list[str]]:
    """The long-running processes of `trainyard cluster` and `trainyard up`: the web app (with
    `processes` gunicorn processes when given) and `workers` named single-job workers."""
    commands = {"web": trainyard(web_args(host, port, processes))}
    for number in range(1, workers + 1):
        commands[f"worker{number}"] = trainyard(worker_args(f"worker{number}@%h"))
    return commands


def cluster_settings(settings: Settings, workers: int) -> Settings:
    """The settings every process of the cluster shares: one job per worker, and TensorFlow sized
    to this machine's share of the CPUs instead of each worker taking all of them."""
    settings = settings.with_overrides(concurrency=1)
    if settings.tf_threads:
        return settings
    return settings.with_overrides(tf_threads=max(1, available_cpus() // workers))


# `trainyard cluster` and `trainyard up` lay out the CPUs alike: a single-job worker per CPU.
workers_option = click.option(
    "--workers",
    default=None,
    type=click.IntRange(1, 64),
    help="Worker processes, one job each [default: one per CPU].",
)


@click.command()
@workers_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
def cluster(workers: int | None, host: str, port: int) -> None:
    """Run the compose topology as processes: migrate, then gunicorn and WORKERS Celery workers.

    Uses TRAINYARD_DATABASE_URL and TRAINYARD_BROKER_URL (`make cluster` points them at the local
    PostgreSQL and Redis). One Ctrl-C stops everything.
    """
    # The database's tools, here only: the client commands start without SQLAlchemy.
    from shared.ops.celery_config import broker_kind, declare_embedded_queue
    from shared.ops.pgadmin import ensure_database

    settings = get_settings()
    workers = workers or available_cpus()
    if broker_kind(settings.broker_url) == "sqlalchemy":
        logger.warning("broker %s is not Redis: workers will poll it slowly", settings.broker_url)
    ensure_database(settings.database_url)
    # gunicorn's processes each build the app: one secret for all, or CSRF tokens fail across them.
    env = child_env(cluster_settings(settings, workers))
    # The compose `migrate` service: a one-shot that must succeed before anything else starts.
    migrated = subprocess.run(trainyard(MIGRATE_ARGS), env=env, check=False)
    if migrated.returncode != 0:
        raise click.ClickException("`trainyard db upgrade` failed; nothing started")
    declare_embedded_queue(settings)
    click.echo(
        f"trainyard: cluster of {workers} worker(s), dashboard on http://{host}:{port}/ "
        "(Ctrl-C stops everything)",
        err=True,
    )
    sys.exit(run_together(cluster_commands(workers, host, port), env=env))
