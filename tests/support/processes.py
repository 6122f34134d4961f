"""`trainyard` commands as real processes: a Celery worker, gunicorn, the CLI; and free ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from shared.config import Settings, child_env
from tests.support.machine import ROOT
from tests.support.waiting import wait_for

# How long a worker may take to register: a cold start imports Celery and connects to the broker.
WORKER_START = 90.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process exactly these settings."""
    return child_env(settings, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")


def cli_env(settings: Settings, url: str) -> dict[str, str]:
    """The environment of a client command (`trainyard submit`...) against the server at `url`."""
    return {**settings_env(settings), "TRAINYARD_URL": url}


def bare_env(**variables: str) -> dict[str, str]:
    """This process's environment without a single TRAINYARD_ variable, plus `variables`: a
    command as a user starts it, on the embedded defaults."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRAINYARD_")}
    return {**env, **variables}


def run_trainyard(
    *args: str, env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `trainyard ARGS` to its end in this environment; its output is captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT, env=dict(env), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def group_members(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes in process group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state, ppid, pgrp, ...
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


class TrainyardProcess(subprocess.Popen[bytes]):
    """A `trainyard` command running in a process group of its own, writing to `log`."""

    log: Path
    what: str

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal_group(self, sig: int) -> None:
        """Send `sig` to the whole group: the process and every child it forked."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def running(self) -> None:
        """Fail, with the end of its log, if the process has exited."""
        if self.poll() is not None:
            raise AssertionError(
                f"{self.what} exited with {self.returncode}:\n{self.output()[-3000:]}"
            )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s; then SIGKILL whatever its group left behind."""
        if self.poll() is None:
            self.terminate()
        self.reap()

    def reap(self) -> None:
        """Wait 30 s for a process told to stop, SIGKILL it after; then whatever its group left."""
        try:
            self.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
            self.wait()
        self.signal_group(signal.SIGKILL)


def start_trainyard(
    settings: Settings, args: list[str], what: str, extra_env: dict[str, str] | None = None
) -> TrainyardProcess:
    """Start `trainyard ARGS` on these settings in a group of its own, logging to the home folder."""
    log = settings.home / f"{what.replace(' ', '-')}-{uuid.uuid4().hex[:6]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**settings_env(settings), **(extra_env or {})}
    with log.open("ab") as out:
        process = TrainyardProcess(
            [sys.executable, "-m", "cli.main", *args],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    process.log, process.what = log, what
    return process


@contextmanager
def trainyard_process(
    settings: Settings,
    args: list[str],
    ready: Callable[[], bool],
    what: str,
    timeout: float,
    extra_env: dict[str, str] | None = None,
) -> Iterator[TrainyardProcess]:
    """Run `trainyard ARGS` until the block ends, once `ready()` says so; fail with its log if it exits."""
    process = start_trainyard(settings, args, what, extra_env)
    try:

        def started() -> bool:
            process.running()
            return ready()

        wait_for(started, timeout, what=what)
        yield process
    finally:
        process.stop()


@contextmanager
def worker_processes(
    settings: Settings,
    *names: str,
    concurrency: int = 1,
    extra_env: dict[str, str] | None = None,
) -> Iterator[list[TrainyardProcess]]:
    """Run real Celery workers (`trainyard worker`), one per name, until the block ends: all start
    at once, and the block begins when every one has registered in the store."""
    from sqlalchemy import select

    from shared.store.engine import Store
    from shared.store.models import Worker

    store = Store(settings.database_url, name="trainyard-test")  # not counted as the worker's
    started: list[TrainyardProcess] = []

    def all_registered() -> bool:
        for process in started:
            process.running()
        with store.session_scope() as session:
            alive = session.scalars(select(Worker.name).where(Worker.stopped_at.is_(None)))
            return set(names) <= {name.split("@", 1)[0] for name in alive}

    try:
        for name in names:
            args = ["worker", "--concurrency", str(concurrency), "--hostname", f"{name}@%h"]
            started.append(start_trainyard(settings, args, f"worker {name}", extra_env))
        wait_for(all_registered, WORKER_START, what=f"worker(s) {', '.join(names)} to register")
        yield started
    finally:
        for process in started:  # all told at once: each hands its jobs over meanwhile
            if process.poll() is None:
                process.terminate()
        for process in started:
            process.reap()
        store.close()


@contextmanager
def worker_process(
    settings: Settings,
    name: str = "test-worker",
    concurrency: int = 1,
    extra_env: dict[str, str] | None = None,
) -> Iterator[TrainyardProcess]:
    """Run one real Celery worker (`trainyard worker`) until the block ends, once it registers."""
    with worker_processes(settings, name, concurrency=concurrency, extra_env=extra_env) as (one,):
        yield one


def http_status(url: str, timeout: float = 2) -> int | None:
    """The status a GET of `url` answers, or None when nothing answers; the connection closed."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as refused:
        refused.close()  # an error answer holds its connection until closed
        return refused.code
    except OSError:
        return None


@contextmanager
def web_process(
    settings: Settings, port: int | None = None, extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    """Serve the app with gunicorn (`trainyard web`) until the block ends; yield its base URL."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        return http_status(f"{url}/api/runs?limit=1") is not None

    args = ["web", "--host", "127.0.0.1", "--port", str(port), "--processes", "2"]
    with trainyard_process(settings, args, answering, "web server", 60, extra_env):
        yield url
