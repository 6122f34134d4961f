"""Running trainyard's processes: the command lines of web and worker, and a supervisor that
starts several and stops them together."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Any

import click

from shared.config import Settings


def trainyard(args: list[str]) -> list[str]:
    """The command line that runs `trainyard ARGS` with this interpreter."""
    return [sys.executable, "-m", "cli.main", *args]


def web_command(host: str, port: int, processes: int = 2, threads: int = 4) -> list[str]:
    """The gunicorn command line that serves the web app with `processes` worker processes."""
    return [
        sys.executable, "-m", "gunicorn",
        "--bind", f"{host}:{port}",
        "--workers", str(processes),
        "--threads", str(threads),
        "--worker-class", "gthread",
        "--access-logfile", "-",
        "--config", "python:cli.gunicorn_conf",
        "web.wsgi:app",
    ]  # fmt: skip


def worker_command(settings: Settings, hostname: str | None, loglevel: str = "INFO") -> list[str]:
    """The Celery command line that runs a training worker with the settings' concurrency."""
    command = [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
        "--loglevel", loglevel,
        "--concurrency", str(settings.jobs_at_once()),
        "--pool", "prefork",
        "--queues", settings.queue,
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    if hostname:
        command += ["--hostname", hostname]
    if settings.log_format == "json":
        # Celery's start-up banner is printed, not logged: leave it out of a JSON log.
        command.insert(command.index("worker"), "--quiet")
    return command


def run_together(
    commands: dict[str, list[str]], env: dict[str, str] | None = None, grace: float = 30.0
) -> int:
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
            processes[name] = subprocess.Popen(command, env=env, process_group=0)
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
