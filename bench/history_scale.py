"""The million-run store of `python -m bench.runs_pages --postgres URL --runs N`: runs and their
epochs written by PostgreSQL itself (INSERT ... SELECT over generate_series, no row crosses the
wire), and the views timed on it, p50 and p95 of each, against the same views at 100 runs."""

from __future__ import annotations

import statistics
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from shared.domain import cursor
from shared.domain.cursor import Position

EPOCHS = 5
SMALL = 100
CHUNK = 200_000
MIN_REPEAT = 100

RUNS_SQL = """
INSERT INTO runs (id, name, tags, archived, status, epochs, batch_size, learning_rate, optimizer,
    hidden_units, dropout, normalize, validation_split, train_samples, seed, created_at,
    started_at, finished_at, worker, attempt, cancel_requested, epochs_done, test_accuracy,
    test_loss)
SELECT i,
    'sweep-' || lpad(i::text, 7, '0') || ' ' || (ARRAY['adam', 'sgd', 'rmsprop'])[i % 3 + 1],
    ARRAY['t' || (i % 50), 'grp-' || (i % 7)]::varchar(64)[],
    i % 20 = 0,
    CASE WHEN i % 100 = 0 THEN 'failed' ELSE 'succeeded' END,
    5, (ARRAY[32, 64, 128])[(i / 3) % 3 + 1], (ARRAY[0.001, 0.003, 0.01, 0.03])[i % 4 + 1],
    (ARRAY['adam', 'sgd', 'rmsprop'])[i % 3 + 1], (ARRAY[32, 64, 128, 256, 512])[i % 5 + 1],
    (ARRAY[0.0, 0.2, 0.5])[(i / 7) % 3 + 1], i % 2 = 0, 0.0, 60000, i,
    timestamptz '2026-01-01' + i * interval '10 seconds',
    timestamptz '2026-01-01' + i * interval '10 seconds' + interval '5 seconds',
    timestamptz '2026-01-01' + i * interval '10 seconds' + interval '125 seconds',
    'bench@host', 1, false, 5,
    CASE WHEN i % 100 = 0 THEN NULL ELSE 0.85 + ((i::bigint * 7919) % 100000) * 0.0000014 END,
    CASE WHEN i % 100 = 0 THEN NULL ELSE 0.05 + ((i::bigint * 104729) % 1000) * 0.0003 END
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS i
"""
EPOCHS_SQL = """
INSERT INTO epochs (run_id, epoch, loss, accuracy, val_loss, val_accuracy, seconds, recorded_at,
    attempt)
SELECT r, e, 1.0 / e, 1.0 - 0.5 / e, 1.1 / e, 1.0 - 0.55 / e, 6.0, timestamptz '2026-01-01', 1
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS r, generate_series(1, CAST(:epochs AS integer)) AS e
"""


def seed(engine: Engine, first: int, last: int, report: Any = None) -> float:
    """Write runs first..last with EPOCHS epochs each, in chunks; the seconds it took."""
    began = time.perf_counter()
    for start in range(first, last + 1, CHUNK):
        stop = min(last, start + CHUNK - 1)
        with engine.begin() as connection:
            connection.execute(text(RUNS_SQL), {"first": start, "last": stop})
            connection.execute(text(EPOCHS_SQL), {"first": start, "last": stop, "epochs": EPOCHS})
        if report:
            report(f"seeded runs {start:,}..{stop:,} ({time.perf_counter() - began:.0f} s)")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(
            text("SELECT setval(pg_get_serial_sequence('runs', 'id'), :n)"), {"n": last}
        )
        connection.execute(text("VACUUM ANALYZE runs"))
        connection.execute(text("VACUUM ANALYZE epochs"))
        # Write the seeded pages out now, so the server's checkpoint of gigabytes does not land
        # in the middle of the timed requests (a trainyard history grows over months, not minutes).
        connection.execute(text("CHECKPOINT"))
    return time.perf_counter() - began


def views(secret: str, runs: int) -> dict[str, str]:
    """The views to time, at `runs` runs: pages and the API, each the way a user reaches it."""
    middle = runs // 2
    deep_id = cursor.encode(secret, Position("-id", middle, middle))
    deep_accuracy = cursor.encode(
        secret,
        Position("-test_accuracy", 0.92, middle),  # mid-range: accuracies span 0.85-0.99
    )
    # Twenty succeeded, unarchived runs near the top of the list.
    compared = [i for i in range(runs, 0, -1) if i % 100 and i % 20][:20]
    return {
        "runs page, first page": "/runs",
        "runs page, deep (cursor)": f"/runs?cursor={deep_id}&page=2",
        "runs page, sort by test accuracy": "/runs?sort=-test_accuracy",
        "runs page, tag + optimizer": "/runs?tag=t7&optimizer=sgd",
        "runs page, name search": f"/runs?q=sweep-{middle:07d}",
        "compare, 20 runs": "/compare?ids=" + ",".join(map(str, compared)),
        "api, first page": "/api/runs",
        "api, deep (cursor)": f"/api/runs?cursor={deep_id}",
        "api, sort by test accuracy, deep": f"/api/runs?sort=-test_accuracy&cursor={deep_accuracy}",
        "api, tag + optimizer": "/api/runs?tag=t7&optimizer=sgd",
        "api, sort by a hyperparameter": "/api/runs?optimizer=adam&sort=-hidden_units",
        # A tag with a range no run of it has (t7's runs are all 128 units): matches nothing.
        "api, tag + range, no match": "/api/runs?tag=t7&hidden_units_min=256",
        "api, name search": f"/api/runs?q=sweep-{middle:07d}",
    }


def timed(client: Any, url: str, repeat: int) -> tuple[float, float]:
    """p50 and p95 milliseconds of `url` over `repeat` requests, after two warm-ups."""
    for _ in range(2):
        client.get(url)
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - began) * 1000)
        if response.status_code != 200:
            raise SystemExit(
                f"{url} answered {response.status_code}: {response.get_data()[:300]!r}"
            )
    cuts = statistics.quantiles(samples, n=20)
    return statistics.median(samples), cuts[18]


def bytes_per_run(engine: Engine, runs: int) -> int:
    """The runs and epochs tables with their indexes and TOAST, over the number of runs."""
    with engine.connect() as connection:
        size = connection.scalar(
            text("SELECT pg_total_relation_size('runs') + pg_total_relation_size('epochs')")
        )
    return int(size or 0) // runs


def main(postgres: str, runs: int, repeat: int) -> None:
    """Seed 100 runs and time each view, then seed up to `runs` and time them again.

    At least 100 requests a view: with 20, p95 is the slowest request but one, so a single pause of
    the machine's decides it."""
    repeat = max(repeat, MIN_REPEAT)
    from bench.runs_pages import bench_app
    from shared.ops.pgadmin import scratch_database
    from shared.store.engine import make_engine

    with (
        scratch_database(postgres, "trainyard_bench_history") as url,
        bench_app(url) as app,
    ):
        client = app.test_client()
        engine = make_engine(url)
        try:
            seed(engine, 1, SMALL)
            small = {
                label: timed(client, path, repeat) for label, path in views("bench", SMALL).items()
            }
            seconds = seed(engine, SMALL + 1, runs, report=lambda line: print(line, flush=True))
            large = {
                label: timed(client, path, repeat) for label, path in views("bench", runs).items()
            }
            per_run = bytes_per_run(engine, runs)
        finally:
            engine.dispose()
    print(f"store: postgresql; {SMALL} runs, then {runs:,} runs and {runs * EPOCHS:,} epoch rows")
    print(f"seeded {runs - SMALL:,} runs in {seconds:.0f} s (INSERT ... SELECT generate_series)")
    print(
        f"{'view':<36} {'p50@100':>8} {'p95@100':>8} {'p50@N':>8} {'p95@N':>8} {'ratio':>6}  (ms, {repeat} requests)"
    )
    for label, (p50, p95) in large.items():
        small_p50, small_p95 = small[label]
        print(
            f"{label:<36} {small_p50:>8.1f} {small_p95:>8.1f} {p50:>8.1f} {p95:>8.1f} {p95 / small_p95:>6.2f}"
        )
    worst = max(large, key=lambda label: large[label][1])
    print(
        f"runs pages at {runs} runs: worst p95 {large[worst][1]:.1f} ms ({worst}); "
        f"bytes per run {per_run}"
    )
