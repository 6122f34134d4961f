"""How long a Prometheus scrape of /metrics takes with 100 runs in the store, then with 10,000
(200,000 epoch rows): near 1 means the scrape's cost does not grow with the history.

    python -m bench.metrics_scrape                  # a temporary SQLite store
    python -m bench.metrics_scrape --postgres URL   # a throwaway database on that PostgreSQL server

The store is tests/support/scale.py's (bulk inserts, so the kept totals are not its figures: this
measures time only). The broker is the embedded SQLite one, checked on every scrape as in use.
"""

from __future__ import annotations

import argparse
import time

from sqlalchemy.engine import make_url

from bench.runs_pages import _database, _time, bench_app
from tests.support.scale import RUNS, seed_store

SMALL = 100


def main() -> None:
    """Seed a store, then print the scrape's median and worst time at each size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="PostgreSQL server URL (a throwaway database is made)")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    with _database(args.postgres) as url, bench_app(url) as app:
        client = app.test_client()
        store = app.extensions["trainyard.store"]
        with store.session_scope() as session:
            seed_store(session, SMALL)
        small_median, small_worst = _time(client, "/metrics", args.repeat)
        began = time.perf_counter()
        with store.session_scope() as session:
            seed_store(session, RUNS - SMALL, start=SMALL)
        seeded = time.perf_counter() - began
        large_median, large_worst = _time(client, "/metrics", args.repeat)
        dialect = make_url(url).get_backend_name()
        print(f"store: {dialect}; seeded {RUNS - SMALL:,} more runs in {seeded:.1f} s")
        print(f"{SMALL:>7,} runs: median {small_median:.1f} ms, worst {small_worst:.1f} ms")
        print(f"{RUNS:>7,} runs: median {large_median:.1f} ms, worst {large_worst:.1f} ms")
        print(
            f"GET /metrics ({dialect}): {small_median:.1f} ms with {SMALL} runs, "
            f"{large_median:.1f} ms with {RUNS:,} runs (ratio {large_median / small_median:.2f})"
        )


if __name__ == "__main__":
    main()
