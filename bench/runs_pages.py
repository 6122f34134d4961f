"""How the runs and compare pages' render time grows from 100 runs to 10,000 runs (200,000 epochs).

Both sizes are measured in one run on one store, and the ratio is what to quote: near 1 means a
page's cost does not grow with the store.

    python -m bench.runs_pages                  # a temporary SQLite store
    python -m bench.runs_pages --postgres URL   # a throwaway database on that PostgreSQL server
    python -m bench.runs_pages --postgres URL --runs 1000000   # a million runs, p50/p95 per view

The store is tests/support/scale.py's, the one tests/web/test_pages_scale.py checks the pages on.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from shared.domain.status import RunStatus
from shared.store.models import Epoch
from tests.support.scale import RUNS, seed_store

logger = logging.getLogger(__name__)


@contextmanager
def _database(postgres: str | None) -> Iterator[str]:
    if not postgres:
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'bench.db'}"
        return
    from shared.ops.pgadmin import scratch_database

    with scratch_database(postgres, "trainyard_bench") as url:
        yield url


@contextmanager
def bench_app(url: str) -> Iterator[Any]:
    """The dashboard's app on a migrated database at `url` (an embedded broker in a folder of its
    own), closed with its store and broker connections when the block ends."""
    from shared.config import Settings
    from shared.ops.heap import freeze_startup_heap
    from shared.store.migrate import upgrade
    from web import create_app

    upgrade(url)
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(
            home=Path(home),
            database_url=url,
            broker_url=f"sqla+sqlite:///{home}/broker.db",
            secret_key="bench",
        )
        app = create_app(settings)
        freeze_startup_heap()  # as web/wsgi.py does in each server process
        try:
            yield app
        finally:
            app.extensions["trainyard.store"].close()
            app.extensions["trainyard.dispatcher"].producer.close()


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
    parser.add_argument(
        "--runs",
        type=int,
        help="PostgreSQL only: seed this many runs (5 epochs each) in the database itself and "
        "print p50/p95 of each view and of GET /api/runs (bench/history_scale.py)",
    )
    args = parser.parse_args()
    if args.runs:
        if not args.postgres:
            parser.error("--runs needs --postgres")
        from bench.history_scale import main as at_scale

        at_scale(args.postgres, args.runs, args.repeat)
        return

    with _database(args.postgres) as url, bench_app(url) as app:
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
