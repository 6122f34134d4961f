"""Jobs per hour for each way of laying out a machine's CPUs: workers x jobs each x threads.

    python -m bench.throughput [--jobs 8 --samples 20000 --epochs 3 --repeat 2 --broker redis]

Each round starts a stack in one layout (bench/stack.py: gunicorn and the workers on the local
Redis, or with `--broker embedded` a SQLite broker file of the round's own as `make up` uses, and a
throwaway PostgreSQL database), waits until every pool process has TensorFlow loaded,
submits the batch through the API and times it from the first submission to the last finish.
Other work on the machine skews a single round: the layouts are interleaved and each keeps its
best round. The default layout of `make up`, `trainyard cluster` and compose should be the fastest.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.stack import REDIS, Layout, stack
from shared.cpus import available_cpus
from shared.domain.status import RunStatus


def layouts(cpus: int) -> list[Layout]:
    """One worker using every CPU for one job; one worker with a job per CPU; a single-job worker
    per CPU (the default of `make up`, `trainyard cluster` and compose)."""
    return [Layout(1, 1, cpus), Layout(1, cpus, 1), Layout(cpus, 1, 1)]


def one_round(layout: Layout, args: argparse.Namespace, home: Path) -> tuple[float, int]:
    """Seconds for the batch, and how many of its runs succeeded."""
    brokers = {"redis": REDIS, "embedded": f"sqla+sqlite:///{home / 'broker.db'}"}
    with stack(home, layout, broker_url=brokers[args.broker]) as running:
        began = time.perf_counter()
        ids = [
            running.submit(train_samples=args.samples, epochs=args.epochs, seed=n)
            for n in range(args.jobs)
        ]
        runs = running.finished(ids)
        seconds = time.perf_counter() - began
    return seconds, sum(run.status == RunStatus.SUCCEEDED for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--samples", type=int, default=20000, help="train_samples of each job")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2, help="rounds per layout")
    parser.add_argument("--broker", choices=["redis", "embedded"], default="redis")
    args = parser.parse_args()
    cpus = available_cpus()
    print(
        f"throughput: {args.jobs} jobs (train_samples={args.samples}, epochs={args.epochs}) "
        f"on {cpus} CPU(s), {args.broker} broker",
        flush=True,
    )
    best: dict[Layout, float] = {}
    with tempfile.TemporaryDirectory(prefix="trainyard-throughput-") as home:
        for repeat in range(args.repeat):
            for number, layout in enumerate(layouts(cpus)):
                seconds, succeeded = one_round(layout, args, Path(home) / f"{repeat}-{number}")
                rate = succeeded / seconds * 3600
                print(
                    f"  round {repeat + 1}, {layout.name}: {succeeded}/{args.jobs} succeeded in "
                    f"{seconds:.1f} s = {rate:.0f} jobs/hour",
                    flush=True,
                )
                best[layout] = max(best.get(layout, 0.0), rate)
    first = best[layouts(cpus)[0]]
    for layout, rate in best.items():
        print(f"best, {layout.name}: {rate:.0f} jobs/hour ({rate / first:.2f}x the first)")


if __name__ == "__main__":
    main()
