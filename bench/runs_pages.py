"""How the runs and compare pages' render time grows from 100 runs to 10,000 runs (200,000 epochs).

Both sizes are measured in one run on one store, and the ratio is what to quote: near 1 means a
page's cost does not grow with the store.

    python -m bench.runs_pages                  # a temporary SQLite store
    python -m bench.runs_pages --postgres URL   # a throwaway database on that PostgreSQL server

`seed_store` is also what tests/web/test_pages_scale.py fills the store with.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from shared.domain.params import OPTIMIZERS
from shared.domain.status import RunStatus
from shared.store.models import Epoch, Run

logger = logging.getLogger(__name__)

RUNS = 10_000
EPOCHS_PER_RUN = 20  # 100 queued runs have none, 100 running ones have 40: 200,000 rows in all
HIDDEN = (32, 64, 128, 256, 512)
RATES = (0.001, 0.003, 0.01, 0.03)
BATCHES = (32, 64, 128)
DROPOUTS = (0.0, 0.2, 0.5)
START = datetime(2026, 1, 1, tzinfo=UTC)


def run_row(i: int) -> dict[str, Any]:
    """The i-th seeded run: every hyperparameter cycles, so filters have known answers."""
    kind = i % 100
    status = {0: RunStatus.QUEUED, 1: RunStatus.RUNNING, 2: RunStatus.FAILED}.get(
        kind, RunStatus.CANCELLED if kind == 3 else RunStatus.SUCCEEDED
    )
    epochs, done = {
        RunStatus.QUEUED: (20, 0),
        RunStatus.RUNNING: (50, 40),
        RunStatus.CANCELLED: (30, EPOCHS_PER_RUN),
    }.get(status, (EPOCHS_PER_RUN, EPOCHS_PER_RUN))
    optimizer = OPTIMIZERS[i % 3]
    created = START + timedelta(seconds=60 * i)
    succeeded = status == RunStatus.SUCCEEDED
    return {
        "name": f"sweep-{i:05d} {optimizer}",
        "status": status,
        "epochs": epochs,
        "batch_size": BATCHES[(i // 3) % 3],
        "learning_rate": RATES[i % 4],
        "optimizer": optimizer,
        "hidden_units": HIDDEN[i % 5],
        "dropout": DROPOUTS[(i // 7) % 3],
        "normalize": i % 2 == 0,
        "validation_split": 0.1 if i % 4 == 0 else 0.0,
        "train_samples": 60000,
        "seed": i,
        "created_at": created,
        "started_at": None if status == RunStatus.QUEUED else created + timedelta(seconds=5),
        "finished_at": created + timedelta(seconds=125) if status.finished else None,
        "worker": None if status == RunStatus.QUEUED else "bench@host",
        "attempt": 0 if status == RunStatus.QUEUED else 1,
        "cancel_requested": status == RunStatus.CANCELLED,
        "epochs_done": done,
        "test_accuracy": round(0.85 + (i * 7919 % 1000) * 0.00014, 6) if succeeded else None,
        "test_loss": round(0.05 + (i * 104729 % 1000) * 0.0003, 6) if succeeded else None,
        "error": "bench: simulated failure" if status == RunStatus.FAILED else None,
    }


def _epoch_rows(run_id: int, done: int, validation: bool) -> list[dict[str, Any]]:
    return [
        {
            "run_id": run_id,
            "epoch": e,
            "loss": 1.0 / e,
            "accuracy": 1.0 - 0.5 / e,
            "val_loss": 1.1 / e if validation else None,
            "val_accuracy": 1.0 - 0.55 / e if validation else None,
            "seconds": 6.0,
            "recorded_at": START,
        }
        for e in range(1, done + 1)
    ]


def seed_store(session: Session, runs: int = RUNS, start: int = 0) -> list[dict[str, Any]]:
    """Bulk-insert runs number `start` to `start + runs` and their epochs; commit; return them."""
    rows = [run_row(i) for i in range(start, start + runs)]
    for start in range(0, len(rows), 2000):
        session.execute(insert(Run), rows[start : start + 2000])
    ids = dict(session.execute(select(Run.seed, Run.id)).all())
    for row in rows:
        row["id"] = ids[row["seed"]]
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.extend(_epoch_rows(row["id"], row["epochs_done"], row["validation_split"] > 0))
        if len(batch) >= 20_000:
            session.execute(insert(Epoch), batch)
            batch = []
    if batch:
        session.execute(insert(Epoch), batch)
    session.commit()
    return rows


@contextmanager
def _database(postgres: str | None) -> Iterator[str]:
    if not postgres:
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'bench.db'}"
        return
    from shared.ops.pgadmin import scratch_database

    with scratch_database(postgres, "trainyard_bench") as url:
        yield url


def _time(client: Any, url: str, repeat: int) -> tuple[float, float]:
    """Median and worst milliseconds to render `url` (after one warm-up request)."""
    client.get(url)
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - began) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}")
    return statistics.median(samples), max(samples)


def main() -> None:
    """Seed a store, then print how long each page takes to render."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="PostgreSQL server URL (a throwaway database is made)")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    from shared.config import Settings
    from shared.store.migrate import upgrade
    from web import create_app

    with _database(args.postgres) as url, tempfile.TemporaryDirectory() as home:
        upgrade(url)
        settings = Settings(
            home=Path(home),
            database_url=url,
            broker_url=f"sqla+sqlite:///{home}/broker.db",
            secret_key="bench",
        )
        app = create_app(settings)
        client = app.test_client()
        store = app.extensions["trainyard.store"]
        with store.session_scope() as session:
            small = seed_store(session, SMALL)
        before = _measure(client, _pages(small), args.repeat)
        began = time.perf_counter()
        with store.session_scope() as session:
            rows = small + seed_store(session, RUNS - SMALL, start=SMALL)
            epochs = session.scalar(select(func.count()).select_from(Epoch))
        seeded = time.perf_counter() - began
        after = _measure(client, _pages(rows), args.repeat)
        dialect = make_url(url).get_backend_name()
        print(f"store: {dialect}; {SMALL} runs, then {len(rows):,} runs and {epochs:,} epoch rows")
        print(f"seeded the rest in {seeded:.1f} s (bulk inserts)")
        print(
            f"{'page':<42} {SMALL:>7} runs {len(rows):>8,} runs {'ratio':>6}   (median ms of {args.repeat})"
        )
        for label, small_ms in before.items():
            print(
                f"{label:<42} {small_ms:>10.1f} {after[label]:>13.1f} {after[label] / small_ms:>6.2f}"
            )


SMALL = 100


def _pages(rows: list[dict[str, Any]]) -> dict[str, str]:
    done = [r["id"] for r in rows if r["status"] == RunStatus.SUCCEEDED]
    return {
        "runs, first page (newest)": "/runs",
        "runs, last page": f"/runs?page={-(-len(rows) // 25)}",
        "runs, sorted by test accuracy": "/runs?sort=-test_accuracy",
        "runs, 200 per page": "/runs?limit=200",
        "runs, filtered (sgd, raw, hidden>=128)": "/runs?optimizer=sgd&normalize=false&hidden_units_min=128&sort=-test_accuracy",
        "runs, name search": "/runs?q=sweep-0004",
        "runs, running only": "/runs?status=running",
        "compare, 2 runs": f"/compare?ids={done[0]},{done[1]}",
        "compare, 20 runs": "/compare?ids=" + ",".join(map(str, done[-20:])),
        "api, runs list": "/api/runs?sort=-test_accuracy",
    }


def _measure(client: Any, pages: dict[str, str], repeat: int) -> dict[str, float]:
    return {label: _time(client, page, repeat)[0] for label, page in pages.items()}


if __name__ == "__main__":
    main()
