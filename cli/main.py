"""`trainyard`: run the stack (up, web, worker), migrate (db), and submit jobs."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

import click

from cli import runs
from cli.client import ApiError, Client
from cli.cluster import cluster
from cli.runs import client_options, make_client
from shared.config import get_settings

logger = logging.getLogger("trainyard")
FINISHED = ("succeeded", "failed", "cancelled")


def _python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def web_command(host: str, port: int, workers: int = 2, threads: int = 4) -> list[str]:
    """The gunicorn command line that serves the web app."""
    return _python_module(
        "gunicorn",
        "--bind", f"{host}:{port}",
        "--workers", str(workers),
        "--threads", str(threads),
        "--worker-class", "gthread",
        "--access-logfile", "-",
        "web.wsgi:app",
    )  # fmt: skip


def worker_command(concurrency: int, hostname: str | None, loglevel: str = "INFO") -> list[str]:
    """The Celery command line that runs a training worker."""
    command = _python_module(
        "celery", "-A", "worker.celery_app", "worker",
        "--loglevel", loglevel,
        "--concurrency", str(concurrency),
        "--pool", "prefork",
        "--queues", get_settings().queue,
        "--without-gossip", "--without-mingle",
    )  # fmt: skip
    if hostname:
        command += ["--hostname", hostname]
    return command


def run_together(commands: dict[str, list[str]], grace: float = 30.0) -> int:
    """Start every command; when one exits or on Ctrl-C/SIGTERM, stop them all. Return an exit code.

    Each command runs in a process group of its own, so a terminal's Ctrl-C reaches only this
    process, and each child gets exactly one SIGTERM from here (gunicorn and Celery can wedge on a
    SIGINT and a SIGTERM arriving together). Whatever is left of a group after `grace` seconds,
    orphaned grandchildren included, is killed.
    """
    processes: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    # Handled explicitly: a shell that starts us in the background leaves SIGINT ignored.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for name, command in commands.items():
            click.echo(f"trainyard: starting {name}: {' '.join(command[2:])}", err=True)
            processes[name] = subprocess.Popen(command, process_group=0)
        while not stopping and all(p.poll() is None for p in processes.values()):
            time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop_groups(list(processes.values()), grace)
    failed = [name for name, p in processes.items() if p.returncode not in (0, -signal.SIGTERM)]
    if failed and not stopping:
        click.echo(f"trainyard: {', '.join(failed)} exited; stopped the rest", err=True)
        return 1
    return 0


def _stop_groups(processes: list[subprocess.Popen[bytes]], grace: float) -> None:
    """SIGTERM each group leader, wait up to `grace` seconds, then SIGKILL what is left of each group."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            click.echo(
                f"trainyard: pid {process.pid} did not stop in {grace:.0f} s; killing it", err=True
            )
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def require_migrated() -> None:
    """Stop with a clear message unless the database is at the latest revision."""
    from shared.db import make_engine
    from shared.errors import NotMigrated
    from shared.migrate import check_schema

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
    from shared.migrate import upgrade

    settings = get_settings()
    upgrade(settings.database_url, revision)
    click.echo(f"database at {revision}")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Downgrade the results store to REVISION ('base' empties it)."""
    from shared.migrate import downgrade

    downgrade(get_settings().database_url, revision)
    click.echo(f"database at {revision}")


@db.command("current")
def db_current() -> None:
    """Print the revision the database is at, and the code's latest."""
    from shared.db import make_engine
    from shared.migrate import current_revision, head_revision

    engine = make_engine(get_settings().database_url)
    click.echo(f"database: {current_revision(engine) or 'not migrated'}; code: {head_revision()}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="gunicorn processes")
def web(host: str, port: int, workers: int) -> None:
    """Serve the dashboard and the API with gunicorn."""
    require_migrated()
    command = web_command(host, port, workers)
    os.execv(command[0], command)


@main.command()
@click.option("--concurrency", default=1, show_default=True, type=int, help="Jobs run at once.")
@click.option("--hostname", default=None, help="Celery node name, e.g. w1@%h.")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(concurrency: int, hostname: str | None, loglevel: str) -> None:
    """Run a Celery worker that trains queued runs."""
    require_migrated()
    command = worker_command(concurrency, hostname, loglevel)
    os.execv(command[0], command)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def up(host: str, port: int) -> None:
    """Migrate, then run the web app and one worker; Ctrl-C stops both."""
    from shared.migrate import upgrade

    settings = get_settings()
    upgrade(settings.database_url)
    click.echo(
        f"trainyard: dashboard on http://{host}:{port}/  (Ctrl-C stops everything)", err=True
    )
    code = run_together(
        {
            "web": web_command(host, port, workers=1),
            "worker": worker_command(1, "worker1@%h"),
        }
    )
    sys.exit(code)


def parse_param(pairs: tuple[str, ...]) -> dict[str, Any]:
    """Turn `k=v` pairs into a dict, reading each value as JSON when it parses."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="--param")
        try:
            params[key.strip()] = json.loads(value)
        except ValueError:
            params[key.strip()] = value
    return params


def _epoch_text(run: dict[str, Any]) -> str:
    if run["latest_loss"] is None:
        return run["status"]
    return f"loss {run['latest_loss']:.4f} acc {run['latest_accuracy']:.4f}"


def follow(client: Client, run_id: int, interval: float = 1.0) -> dict[str, Any]:
    """Show a progress bar that follows the run's epochs until it finishes; return the run.

    Off a terminal (a log, a pipe) it prints one line per finished epoch instead.
    """
    run = client.run(run_id)
    shown = 0
    if not sys.stderr.isatty():
        while True:
            if run["epochs_done"] > shown:
                shown = run["epochs_done"]
                click.echo(
                    f"run {run_id}: epoch {shown}/{run['epochs_total']} {_epoch_text(run)}",
                    err=True,
                )
            if run["status"] in FINISHED:
                return run
            time.sleep(interval)
            run = client.run(run_id)
    with click.progressbar(
        length=run["epochs_total"],
        label=f"run {run_id}",
        file=sys.stderr,
        show_pos=True,
        show_eta=True,
        item_show_func=lambda _: _epoch_text(run),
    ) as bar:
        while True:
            if run["epochs_done"] > shown:
                bar.update(run["epochs_done"] - shown)
                shown = run["epochs_done"]
            else:
                bar.render_progress()
            if run["status"] in FINISHED:
                return run
            time.sleep(interval)
            run = client.run(run_id)


@main.command()
@click.option(
    "--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="A hyperparameter; repeat."
)
@click.option("--name", default=None)
@click.option(
    "--idempotency-key", default=None, help="Retrying with the same key queues nothing new."
)
@click.option("--wait", is_flag=True, help="Follow the run and exit non-zero unless it succeeds.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@client_options
def submit(
    params: tuple[str, ...],
    name: str | None,
    idempotency_key: str | None,
    wait: bool,
    as_json: bool,
    url: str | None,
    token: str | None,
) -> None:
    """Queue a training run; set hyperparameters with -p, as in -p epochs=3 -p normalize=false."""
    client = make_client(url, token)
    try:
        run = client.submit(parse_param(params), name, idempotency_key)
        click.echo(f"run {run['id']} queued: {run['name']}", err=True)
        if wait:
            run = follow(client, run["id"])
    except ApiError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(run, indent=2))
    if wait:
        summary = f"run {run['id']} {run['status']}"
        if run["test_accuracy"] is not None:
            summary += f": test accuracy {run['test_accuracy']:.4f}, loss {run['test_loss']:.4f}"
        if run["error"]:
            summary += f": {run['error']}"
        click.echo(summary)
        if run["status"] != "succeeded":
            sys.exit(1)
    elif not as_json:
        click.echo(run["id"])


main.add_command(cluster)

runs.register(main)

if __name__ == "__main__":
    main()
