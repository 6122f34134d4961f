"""Prediction latency through gunicorn: 1 image and 1,000 images a request, the first request for
a run (its weights read from the store) and later ones (from the process's cache).

    python -m bench.predict                     # goal: warm single-image p95 <= 10 ms
    python -m bench.predict --requests 500

One run of the default width (128 hidden units) is trained here on a slice of MNIST; its model is
stored under COLD_RUNS run ids, so each cold request meets weights no process has read yet. The
client keeps one HTTP connection open and its bodies are encoded before the clock starts: the
figures are the server's (gunicorn, `trainyard web`'s 2 processes x 4 threads) plus loopback.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from shared.config import Settings
from shared.domain.params import Hyperparams
from shared.domain.status import RunStatus
from shared.store.engine import Store
from shared.store.lease import claim, finish
from shared.store.migrate import upgrade
from shared.store.runs import create_run
from tests.support.machine import mnist_dir
from tests.support.processes import web_process

COLD_RUNS = 20
GOAL_MS = 10.0


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p95 of `samples` (milliseconds)."""
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[
        min(len(ordered) - 1, round(0.95 * len(ordered)) - 1)
    ]


def trained_model() -> tuple[bytes, float, np.ndarray]:
    """A run trained here: its `.keras` file, its test accuracy, and the test images."""
    from worker.training.data import load_mnist
    from worker.training.model import Job
    from worker.training.runtime import init_tensorflow

    init_tensorflow(2)
    mnist = load_mnist(mnist_dir())
    job = Job(Hyperparams(epochs=2, train_samples=10_000, seed=1), mnist)
    assert job.train_epochs(lambda _: None)
    _, accuracy, _ = job.evaluate()
    return job.keras_file(), accuracy, mnist.test_images


def store_runs(url: str, keras_file: bytes, accuracy: float, count: int) -> list[int]:
    """`count` succeeded runs holding the same model; their ids."""
    store = Store(url)
    ids = []
    try:
        with store.session_scope() as session:
            for index in range(count):
                run = create_run(session, Hyperparams(seed=index + 1), f"bench {index}")
                session.flush()
                lease = claim(session, run.id, "bench@here", pid=0, seconds=600)
                assert lease is not None
                finish(
                    session,
                    lease,
                    RunStatus.SUCCEEDED,
                    test_accuracy=accuracy,
                    keras_file=keras_file,
                )
                ids.append(run.id)
    finally:
        store.close()
    return ids


class Timer:
    """POSTs over one kept-alive connection, timed."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)

    def post(self, run_id: int, body: bytes, content_type: str) -> float:
        """Milliseconds for one prediction request, answered 200."""
        began = time.perf_counter()
        self.connection.request(
            "POST", f"/api/runs/{run_id}/predict", body, {"Content-Type": content_type}
        )
        response = self.connection.getresponse()
        data = response.read()
        elapsed = (time.perf_counter() - began) * 1000
        if response.status != 200:
            raise SystemExit(f"run {run_id} answered {response.status}: {data[:300]!r}")
        return elapsed

    def close(self) -> None:
        self.connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="warm single-image requests")
    parser.add_argument("--batches", type=int, default=30, help="warm 1,000-image requests")
    args = parser.parse_args()

    keras_file, accuracy, images = trained_model()
    one = json.dumps({"inputs": images[:1].tolist()}).encode()
    batch = json.dumps({"inputs": images[:1000].tolist()}).encode()
    drawing = io.BytesIO()
    Image.fromarray(255 - images[0]).resize((280, 280), Image.Resampling.BILINEAR).save(
        drawing, format="PNG"
    )
    json_type, png_type = "application/json", "image/png"
    with tempfile.TemporaryDirectory() as home:
        url = f"sqlite:///{Path(home) / 'bench.db'}"
        upgrade(url)
        settings = Settings(
            home=Path(home),
            database_url=url,
            broker_url=f"sqla+sqlite:///{home}/broker.db",
            secret_key="bench",
        )
        ids = store_runs(url, keras_file, accuracy, 1 + 2 * COLD_RUNS)
        warm_run, cold_one, cold_batch = ids[0], ids[1 : 1 + COLD_RUNS], ids[1 + COLD_RUNS :]
        with web_process(settings) as base:
            timer = Timer(base)
            try:
                figures = {
                    "1 image, first request for a run": [
                        timer.post(run, one, json_type) for run in cold_one
                    ],
                    "1,000 images, first request for a run": [
                        timer.post(run, batch, json_type) for run in cold_batch
                    ],
                }
                for _ in range(20):  # both gunicorn processes read the run's weights
                    timer.post(warm_run, one, json_type)
                figures["1 image, later requests"] = [
                    timer.post(warm_run, one, json_type) for _ in range(args.requests)
                ]
                figures["1,000 images, later requests"] = [
                    timer.post(warm_run, batch, json_type) for _ in range(args.batches)
                ]
                figures["1 PNG drawing (280x280), later requests"] = [
                    timer.post(warm_run, drawing.getvalue(), png_type) for _ in range(args.requests)
                ]
            finally:
                timer.close()
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    print(f"model: 784-128-10, test accuracy {accuracy:.4f}; OPENBLAS_NUM_THREADS={threads}")
    print(f"bodies: 1 image {len(one):,} B, 1,000 images {len(batch):,} B (JSON)")
    print(f"{'request':<42} {'n':>4} {'p50 ms':>8} {'p95 ms':>8}")
    for label, samples in figures.items():
        p50, p95 = percentiles(samples)
        print(f"{label:<42} {len(samples):>4} {p50:>8.2f} {p95:>8.2f}")
    _, warm_p95 = percentiles(figures["1 image, later requests"])
    verdict = "met" if warm_p95 <= GOAL_MS else "missed"
    print(f"warm single-image p95: {warm_p95:.2f} ms (goal <= {GOAL_MS:g} ms: {verdict})")


if __name__ == "__main__":
    main()
