"""Jobs per hour with 1 and then 2 workers: the same batch of short jobs through `trainyard cluster`.

Each round starts the process topology (`trainyard cluster --workers N`) on the local Redis and a
throwaway PostgreSQL database, waits until every worker has TensorFlow loaded, submits the batch
through the API and times it from the first submission to the last finish (database timestamps).
Run: `python -m bench.throughput [--jobs 6 --samples 3000 --epochs 2 --workers 1,2 --repeat 2]`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from cli.client import Client
from shared.models import FINISHED_STATUSES, Run

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Round:
    """What one round measured."""

    workers: int
    seconds: float
    succeeded: int
    distinct_workers: int

    @property
    def jobs_per_hour(self) -> float:
        return self.succeeded / self.seconds * 3600


def wait(check: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `check()` until truthy; raise after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.25)


def run_round(args: argparse.Namespace, workers: int, home: Path) -> Round:
    """Start a cluster of `workers`, push the batch through it, stop it; return the figures."""
    server = make_url(args.server)
    database_url = server.set(database=f"trainyard_bench_{uuid.uuid4().hex[:8]}")
    url_text = database_url.render_as_string(hide_password=False)
    port = 18000 + os.getpid() % 1000 + workers
    log = home / f"cluster-{workers}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    env.update(
        TRAINYARD_HOME=str(home),
        TRAINYARD_DATABASE_URL=url_text,
        TRAINYARD_BROKER_URL=args.broker,
        TRAINYARD_QUEUE=f"trainyard-bench-{uuid.uuid4().hex[:8]}",
        TRAINYARD_DATA_DIR=args.data_dir,
        TRAINYARD_ALLOW_DOWNLOAD="0",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONUNBUFFERED="1",
    )
    command = [sys.executable, "-m", "cli.main", "cluster", "--workers", str(workers)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    engine = None
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"cluster exited:\n{log.read_text()[-3000:]}")
            loaded = len(re.findall(r"TensorFlow \S+ ready with", log.read_text()))
            try:
                with urllib.request.urlopen(f"{base}/api/runs?limit=1", timeout=2):
                    return loaded >= workers
            except OSError:
                return False

        wait(ready, 240, f"{workers} worker(s) with TensorFlow loaded")
        client = Client(base)
        ids = [
            client.submit(
                {"train_samples": args.samples, "epochs": args.epochs, "seed": n}, f"bench {n}"
            )["id"]
            for n in range(args.jobs)
        ]
        wait(
            lambda: all(client.run(i)["status"] in FINISHED_STATUSES for i in ids),
            3600,
            "the batch to finish",
        )
        engine = create_engine(url_text)
        with Session(engine) as session:
            first, last = session.execute(
                select(func.min(Run.created_at), func.max(Run.finished_at))
            ).one()
            succeeded = session.scalar(
                select(func.count()).select_from(Run).where(Run.status == "succeeded")
            )
            distinct = session.scalar(select(func.count(func.distinct(Run.worker))))
        return Round(workers, (last - first).total_seconds(), succeeded or 0, distinct or 0)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as a person would stop it
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if engine is not None:
            engine.dispose()
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            name = database_url.database
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    """Measure each worker count and print jobs per hour and the ratio to the first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--samples", type=int, default=3000, help="train_samples of each job")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--repeat", type=int, default=2, help="rounds per worker count")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--server", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("TRAINYARD_DATA_DIR", str(ROOT.parent / "shared/datasets/mnist")),
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    cpus = len(os.sched_getaffinity(0))
    print(
        f"throughput: {args.jobs} jobs (train_samples={args.samples}, epochs={args.epochs}) "
        f"on {cpus} CPUs; each worker runs one job at a time with {cpus}/N TensorFlow threads"
    )
    # Other work on the machine skews a single round: interleave the counts, keep each one's best.
    best: dict[int, Round] = {}
    with tempfile.TemporaryDirectory(prefix="trainyard-bench-") as home:
        for repeat in range(args.repeat):
            for workers in counts:
                load = os.getloadavg()[0]
                result = run_round(args, workers, Path(home))
                print(
                    f"  round {repeat + 1}, {workers} worker(s): {result.succeeded}/{args.jobs} "
                    f"succeeded in {result.seconds:.1f} s on {result.distinct_workers} worker(s) "
                    f"= {result.jobs_per_hour:.0f} jobs/hour (load average before: {load:.1f})",
                    flush=True,
                )
                if workers not in best or result.jobs_per_hour > best[workers].jobs_per_hour:
                    best[workers] = result
    first = best[counts[0]]
    for workers in counts:
        print(f"best, {workers} worker(s): {best[workers].jobs_per_hour:.0f} jobs/hour")
    for workers in counts[1:]:
        ratio = best[workers].jobs_per_hour / first.jobs_per_hour
        print(f"ratio {workers} / {counts[0]} worker(s): {ratio:.2f}")


if __name__ == "__main__":
    main()
