"""A trainyard stack for the benchmarks: gunicorn and worker processes on the machine's Redis and a
throwaway PostgreSQL database, in a given layout (workers x jobs each x TensorFlow threads)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cli.client import Client
from shared.config import Settings, child_env
from shared.domain.status import FINISHED_STATUSES
from shared.ops.pgadmin import scratch_database
from shared.store.engine import Store
from shared.store.migrate import upgrade
from shared.store.models import Run

ROOT = Path(__file__).resolve().parent.parent
REDIS = os.environ.get("TRAINYARD_BENCH_BROKER_URL", "redis://127.0.0.1:6379/0")
POSTGRES = os.environ.get(
    "TRAINYARD_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
T = TypeVar("T")


def data_dir() -> str:
    """The MNIST folder: TRAINYARD_DATA_DIR, else ../shared/datasets/mnist."""
    return os.environ.get("TRAINYARD_DATA_DIR") or str(ROOT.parent / "shared/datasets/mnist")


def wait(check: Callable[[], T], timeout: float, what: str, every: float = 0.2) -> T:
    """Poll `check()` until it returns something truthy; raise after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
    return value


@dataclass(frozen=True)
class Layout:
    """How a machine's CPUs are used: worker nodes, jobs each runs at once, threads per job."""

    workers: int
    jobs_each: int
    threads: int

    @property
    def name(self) -> str:
        jobs = f"{self.jobs_each} jobs" if self.jobs_each > 1 else "1 job"
        return f"{self.workers} worker(s) x {jobs} x {self.threads} thread(s)"


@dataclass
class Process:
    """A `trainyard` command in a process group of its own."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: int, group: bool = True) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(self.popen.pid, sig)
            else:
                self.popen.send_signal(sig)


@dataclass
class Stack:
    """A running stack: its URL, a client, its store, and its processes by name."""

    url: str
    settings: Settings
    store: Store
    processes: dict[str, Process] = field(default_factory=dict)

    @property
    def client(self) -> Client:
        return Client(self.url, self.settings.api_token)

    def start(self, name: str, args: list[str], settings: Settings | None = None) -> Process:
        log = self.settings.home / f"{name}.log"
        env = child_env(settings or self.settings, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "cli.main", *args],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.processes[name] = Process(name, popen, log)
        return self.processes[name]

    def start_worker(self, name: str, layout: Layout) -> Process:
        """A worker node whose pool processes have loaded TensorFlow and MNIST."""
        settings = self.settings.with_overrides(
            concurrency=layout.jobs_each, tf_threads=layout.threads
        )
        process = self.start(name, ["worker", "--hostname", f"{name}@%h"], settings)
        wait(
            lambda: (
                len(re.findall(r"TensorFlow \S+ ready with", process.output())) >= layout.jobs_each
            ),
            180,
            f"{name}'s pool processes to load TensorFlow",
        )
        return process

    def submit(self, **params: Any) -> int:
        return int(self.client.submit(params)["id"])

    def run(self, run_id: int) -> Run:
        with self.store.session_scope() as session:
            run = session.get(Run, run_id)
            assert run is not None
            session.expunge(run)
            return run

    def finished(self, run_ids: list[int], timeout: float = 1800) -> list[Run]:
        def done() -> list[Run] | None:
            runs = [self.run(run_id) for run_id in run_ids]
            return runs if all(run.status in FINISHED_STATUSES for run in runs) else None

        return wait(done, timeout, f"runs {run_ids} to finish", every=0.25)

    def stop(self) -> None:
        for process in self.processes.values():
            process.signal(signal.SIGTERM, group=False)
        deadline = time.monotonic() + 60
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            process.signal(signal.SIGKILL)
            process.popen.wait()


@contextmanager
def stack(
    home: Path, layout: Layout | None = None, server: str = POSTGRES, **overrides: Any
) -> Iterator[Stack]:
    """Start the web app and (with `layout`) its workers on a new database of the PostgreSQL
    `server`; stop everything when the block ends."""
    with scratch_database(server, "trainyard_bench") as database_url:
        upgrade(database_url)
        settings = Settings(
            home=home,
            database_url=database_url,
            broker_url=REDIS,
            data_dir=Path(data_dir()),
            allow_download=False,
            secret_key="bench",
            queue=f"trainyard-bench-{uuid.uuid4().hex[:8]}",
            max_queued_runs=100_000,
        ).with_overrides(**overrides)
        home.mkdir(parents=True, exist_ok=True)
        port = 18000 + os.getpid() % 2000
        running = Stack(f"http://127.0.0.1:{port}", settings, Store(database_url))
        try:
            running.start("web", ["web", "--host", "127.0.0.1", "--port", str(port)])

            def answering() -> bool:
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(f"{running.url}/api/health", timeout=2).close()
                    return True
                return False

            wait(answering, 60, "the web app")
            for number in range(1, (layout.workers if layout else 0) + 1):
                assert layout is not None
                running.start_worker(f"w{number}", layout)
            yield running
        finally:
            running.stop()
            running.store.close()
