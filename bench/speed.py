"""trainyard against the TensorFlow quickstart, side by side in one run.

    python -m bench.speed [--seeds 4]

1. The quickstart as written (bench/tutorial/quickstart.py), normalized then raw: each run's wall
   time (TensorFlow's import included) and its epochs' seconds.
2. trainyard on `make up`'s layout (one worker, a job per CPU, one thread each), on the machine's
   Redis and a throwaway PostgreSQL database: one quickstart run alone (epoch seconds, as its
   worker recorded them), then the tutorial's table with replicates (normalize on and off x
   `--seeds` seeds) through the queue, from the first submit to the last finish.
3. The evaluation of the 10,000 test images (loss, accuracy, confusion matrix, misclassified
   sample), timed in this process.
Prints the ratios: trainyard's epoch time over the script's, and the table's time over the
script's two runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bench.stack import ROOT, Layout, data_dir, stack
from shared.cpus import available_cpus
from shared.store.models import Epoch


def script_run(raw: bool) -> dict[str, Any]:
    """Run the quickstart in a fresh process; return what it measured."""
    command = [sys.executable, "-m", "bench.tutorial_run", *(["--raw"] if raw else [])]
    began = time.perf_counter()
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, check=True,
        env={"TRAINYARD_DATA_DIR": data_dir(), "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall"] = time.perf_counter() - began
    return result


def epoch_seconds(session: Session, run_ids: list[int]) -> list[float]:
    """The epochs' seconds, as the workers recorded them."""
    return list(session.scalars(select(Epoch.seconds).where(Epoch.run_id.in_(run_ids))))


def evaluation_seconds(repeat: int = 10) -> float:
    """Median seconds of one Job.evaluate() on a trained-for-one-epoch model, in this process."""
    from shared.domain.params import Hyperparams
    from worker.training.data import load_mnist
    from worker.training.model import Job
    from worker.training.runtime import init_tensorflow

    init_tensorflow(1)
    job = Job(Hyperparams(epochs=1, seed=1, train_samples=6000), load_mnist(Path(data_dir())))
    job.train_epoch(1)
    job.evaluate()  # the first call traces
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        job.evaluate()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    cpus = available_cpus()
    print(f"speed: the quickstart's recipe on {cpus} CPU(s)", flush=True)

    normalized, raw = script_run(raw=False), script_run(raw=True)
    script_epoch = statistics.median(normalized["epochs"][1:] + raw["epochs"][1:])
    script_two = normalized["wall"] + raw["wall"]
    for run in (normalized, raw):
        print(
            f"  script, normalize={run['normalize']}: {run['wall']:.1f} s in all, epochs "
            + ", ".join(f"{s:.2f}" for s in run["epochs"])
            + f" s; test accuracy {run['test_accuracy']:.4f}",
            flush=True,
        )

    layout = Layout(workers=1, jobs_each=cpus, threads=1)
    with (
        tempfile.TemporaryDirectory(prefix="trainyard-speed-") as home,
        stack(Path(home), layout) as running,
    ):
        alone = running.submit(seed=1)
        running.finished([alone])
        with running.store.session_scope() as session:
            alone_epochs = epoch_seconds(session, [alone])
        began = time.perf_counter()
        table = [
            running.submit(normalize=normalize, seed=seed)
            for normalize in (True, False)
            for seed in range(1, args.seeds + 1)
        ]
        runs = running.finished(table)
        table_seconds = time.perf_counter() - began
        with running.store.session_scope() as session:
            busy_epochs = epoch_seconds(session, table)
    ours = statistics.median(alone_epochs[1:])
    print(f"  trainyard ({layout.name}), one run alone: epochs "
          + ", ".join(f"{s:.2f}" for s in alone_epochs) + " s")  # fmt: skip
    print(f"  epoch time, trainyard / script: {ours:.2f} / {script_epoch:.2f} s = "
          f"{ours / script_epoch:.2f}x (with every CPU busy: "
          f"{statistics.median(busy_epochs) / script_epoch:.2f}x)")  # fmt: skip
    for normalize in (True, False):
        scores = [run.test_accuracy or 0 for run in runs if run.normalize == normalize]
        print(f"  table, normalize={normalize}: test accuracy mean {statistics.mean(scores):.4f} "
              f"(min {min(scores):.4f}, max {max(scores):.4f}, n={len(scores)})")  # fmt: skip
    print(f"  the table with replicates ({len(table)} runs) through the queue: {table_seconds:.1f} s; "
          f"the script's 2 runs: {script_two:.1f} s; ratio {table_seconds / script_two:.2f}",
          flush=True)  # fmt: skip
    evaluation = evaluation_seconds()
    print(f"  evaluation of the 10,000 test images with the misclassified sample: "
          f"{evaluation * 1000:.0f} ms (median of 10)")  # fmt: skip


if __name__ == "__main__":
    main()
