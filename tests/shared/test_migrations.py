"""Every migration upgrades an empty SQLite and PostgreSQL to the models' schema and downgrades back."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from shared.domain.filters import SORT_FIELDS
from shared.ops.pgadmin import scratch_database
from shared.store.engine import make_engine
from shared.store.migrate import current_revision, downgrade, head_revision, upgrade
from shared.store.models import Base

# The server the PostgreSQL case creates its throwaway database on.
PG_SERVER = os.environ.get(
    "TRAINYARD_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
MODEL_TABLES = set(Base.metadata.tables)


def reachable(server_url: str) -> bool:
    """Whether the PostgreSQL server answers (the suite may run where there is none)."""
    engine = create_engine(server_url)
    try:
        with engine.connect():
            return True
    except OperationalError:
        return False
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        if "TRAINYARD_TEST_DATABASE_URL" not in os.environ and not reachable(PG_SERVER):
            pytest.skip(f"no PostgreSQL at {PG_SERVER}")
        with scratch_database(PG_SERVER, "trainyard_migrations") as url:
            yield url


@pytest.fixture()
def engine(empty_url: str) -> Iterator[Engine]:
    engine = make_engine(empty_url)
    yield engine
    engine.dispose()


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def schema_differences(engine: Engine) -> list[object]:
    """What autogenerate would write to bring the database to the models (nothing, ideally)."""
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def test_upgrade_from_empty_matches_the_models(empty_url: str, engine: Engine) -> None:
    assert tables(engine) == set()
    upgrade(empty_url)
    assert tables(engine) == MODEL_TABLES | {"alembic_version"}
    assert current_revision(engine) == head_revision()
    assert schema_differences(engine) == []


def test_downgrade_step_by_step_to_empty_then_up_again(empty_url: str, engine: Engine) -> None:
    upgrade(empty_url)
    steps = 0
    while current_revision(engine) is not None:
        downgrade(empty_url, "-1")  # each revision's downgrade on its own
        steps += 1
        assert steps < 100, "downgrade does not reach base"
    assert tables(engine) - {"alembic_version"} == set()
    upgrade(empty_url)
    assert tables(engine) == MODEL_TABLES | {"alembic_version"}
    assert schema_differences(engine) == []


def test_the_metric_totals_start_from_the_runs_already_stored(
    empty_url: str, engine: Engine
) -> None:
    from collections import Counter

    from sqlalchemy import MetaData, Table

    from shared.store.models import MetricTotal
    from tests.support.scale import run_row

    upgrade(empty_url, "0003")
    rows = [run_row(i) for i in range(200)]
    with engine.begin() as connection:
        # The runs table as it was at 0003 (later revisions add columns with defaults).
        runs = Table("runs", MetaData(), autoload_with=connection)
        connection.execute(
            runs.insert(),
            [{k: getattr(v, "value", v) for k, v in row.items() if k in runs.c} for row in rows],
        )
    upgrade(empty_url, "0007")
    with engine.connect() as connection:
        kept = {
            (name, label): value
            for name, label, value in connection.execute(
                MetricTotal.__table__.select().with_only_columns(
                    MetricTotal.name, MetricTotal.label, MetricTotal.value
                )
            )
        }
    finished = Counter(row["status"].value for row in rows if row["status"].finished)
    assert kept == {
        ("runs_submitted_total", ""): 200,
        **{("runs_finished_total", status): n for status, n in finished.items()},
    }


def test_history_revision_keeps_the_rows_runs_own(empty_url: str, engine: Engine) -> None:
    """0006 adds columns to a table full of runs: its epochs and evaluations stay (a rebuild of
    `runs` on SQLite with foreign keys on would cascade them away)."""
    from sqlalchemy import text

    upgrade(empty_url, "0003")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO runs (id, name, status, epochs, batch_size, learning_rate, optimizer,"
                " hidden_units, dropout, normalize, validation_split, train_samples, seed,"
                " created_at, attempt, lost_attempts, queue, sends, cancel_requested,"
                " handover_requested, epochs_done) VALUES (1, 'old', 'succeeded', 1, 32, 0.01,"
                " 'adam', 8, 0.0, true, 0.0, 100, 1, '2026-01-01', 1, '[]', 'training', 1,"
                " false, false, 1)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO epochs (run_id, epoch, loss, accuracy, seconds, recorded_at, attempt)"
                " VALUES (1, 1, 0.5, 0.9, 1.0, '2026-01-01', 1)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO evaluations (run_id, confusion_matrix, per_class_accuracy,"
                " misclassified) VALUES (1, '[]', '[]', '[]')"
            )
        )
    upgrade(empty_url)
    downgrade(empty_url, "0003")
    upgrade(empty_url)
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM epochs")) == 1
        assert connection.scalar(text("SELECT count(*) FROM evaluations")) == 1
        row = connection.execute(text("SELECT archived, note FROM runs")).one()
        assert (bool(row.archived), row.note) == (False, None)


def test_every_sort_the_lists_offer_has_an_index_to_read_in_order(
    empty_url: str, engine: Engine
) -> None:
    """A (field, id) index per sortable field, so a sort is a keyset read off an index, never a
    sort of the table (at a million runs a hyperparameter's sort took 440-640 ms without one)."""
    upgrade(empty_url)
    leading = {tuple(index["column_names"][:2]) for index in inspect(engine).get_indexes("runs")}
    unserved = [field for field in SORT_FIELDS if field != "id" and (field, "id") not in leading]
    assert unserved == []


def test_the_metric_shards_fold_back_into_one_row_each_on_downgrade(
    empty_url: str, engine: Engine
) -> None:
    upgrade(empty_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO metric_totals (name, label, shard, value) VALUES "
                "('runs_submitted_total', '', 3, 2), ('runs_submitted_total', '', 7, 5), "
                "('runs_finished_total', 'failed', 0, 1), ('runs_finished_total', 'failed', 2, 1)"
            )
        )
    downgrade(empty_url, "0008")
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT name, label, value FROM metric_totals")).all()
    assert sorted(map(tuple, rows)) == [
        ("runs_finished_total", "failed", 2.0),
        ("runs_submitted_total", "", 7.0),
    ]
