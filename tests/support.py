"""Helpers the tests share: settings for a test, real processes (worker, web), waiting."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from shared.config import Settings

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def mnist_dir() -> Path:
    """The MNIST folder tests read: TRAINYARD_DATA_DIR, else ../shared/datasets/mnist."""
    configured = os.environ.get("TRAINYARD_DATA_DIR")
    return (
        Path(configured).resolve()
        if configured
        else (ROOT.parent / "shared" / "datasets" / "mnist")
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    env.update(
        TRAINYARD_HOME=str(settings.home),
        TRAINYARD_DATABASE_URL=settings.database_url,
        TRAINYARD_BROKER_URL=settings.broker_url,
        TRAINYARD_SECRET_KEY=settings.secret_key,
        TRAINYARD_QUEUE=settings.queue,
        TRAINYARD_HEARTBEAT_INTERVAL=str(settings.heartbeat_interval),
        TRAINYARD_HEARTBEAT_TIMEOUT=str(settings.heartbeat_timeout),
        TRAINYARD_ALLOW_DOWNLOAD="1" if settings.allow_download else "0",
        TRAINYARD_URL=settings.url,
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONUNBUFFERED="1",
    )
    if settings.data_dir is not None:
        env["TRAINYARD_DATA_DIR"] = str(settings.data_dir)
    if settings.api_token:
        env["TRAINYARD_API_TOKEN"] = settings.api_token
    if settings.tf_threads:
        env["TRAINYARD_TF_THREADS"] = str(settings.tf_threads)
    return env


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    check: Callable[[], T], timeout: float, interval: float = 0.2, what: str = "condition"
) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@contextmanager
def trainyard_process(
    settings: Settings,
    args: list[str],
    ready: Callable[[], bool],
    what: str,
    timeout: float,
    extra_env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[Any]]:
    """Run `trainyard ARGS` until the block ends, once `ready()` says so; fail with its log if it exits."""
    log = settings.home / f"{what.replace(' ', '-')}-{uuid.uuid4().hex[:6]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**settings_env(settings), **(extra_env or {})}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def started() -> bool:
        if process.poll() is not None:
            raise AssertionError(
                f"{what} exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        return ready()

    try:
        wait_for(started, timeout, what=what)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def worker_process(
    settings: Settings,
    name: str = "test-worker",
    concurrency: int = 1,
    extra_env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[Any]]:
    """Run a real Celery worker (`trainyard worker`) until the block ends; wait until it registers."""
    from sqlalchemy import select

    from shared import db
    from shared.models import Worker

    def registered() -> bool:
        alive = select(Worker).where(Worker.name.like(f"{name}@%"), Worker.stopped_at.is_(None))
        with db.session_scope() as session:
            return session.scalar(alive) is not None

    args = ["worker", "--concurrency", str(concurrency), "--hostname", f"{name}@%h"]
    with trainyard_process(settings, args, registered, f"worker {name}", 90, extra_env) as process:
        yield process


@contextmanager
def web_process(settings: Settings, port: int | None = None) -> Iterator[str]:
    """Serve the app with gunicorn (`trainyard web`) until the block ends; yield its base URL."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/api/runs?limit=1", timeout=2):
                return True
        except OSError:
            return False

    args = ["web", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    with trainyard_process(settings, args, answering, "web server", 60):
        yield url


@contextmanager
def postgres_database(server_url: str, prefix: str = "trainyard_test") -> Iterator[str]:
    """Create an empty database on the PostgreSQL server `server_url` names; drop it afterwards."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    server = make_url(server_url)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
