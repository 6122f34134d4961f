"""A worker node's connection budget, counted by PostgreSQL itself (pg_stat_activity): one for
the node while idle, one more per running job, none kept after a job ends."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.config import Settings
from shared.domain.status import RunStatus
from shared.ops.pgadmin import scratch_database
from shared.store.engine import Store
from tests.e2e.test_faults import fault_settings
from tests.support.app import client_for, submit_run
from tests.support.machine import PG_SERVER, REDIS_URL
from tests.support.processes import worker_process
from tests.support.runs import read_run
from tests.support.waiting import until_finished, wait_for

# The test's own connections carry this name, its in-process web app's trainyard-web/<host>: every
# other connection to its database is the node's.
TEST = "trainyard-test"


@pytest.fixture()
def budget(tmp_path: Path) -> Iterator[tuple[Settings, Store]]:
    with scratch_database(PG_SERVER, "trainyard_budget") as url:
        settings = fault_settings(tmp_path / "home", url, REDIS_URL)
        store = Store(url, name=TEST)
        try:
            yield settings, store
        finally:
            store.close()


def connections(store: Store) -> list[str]:
    """application_name of every client connection to the store's database but the test's."""
    with store.engine.connect() as connection:
        names = connection.execute(
            text(
                "SELECT application_name FROM pg_stat_activity"
                " WHERE datname = current_database() AND backend_type = 'client backend'"
                " AND application_name <> :test AND application_name NOT LIKE 'trainyard-web/%'"
                " ORDER BY application_name"
            ),
            {"test": TEST},
        )
        return [name for (name,) in names]


def kinds(names: list[str]) -> list[str]:
    """'node' or 'job/<run>' for each name, so a failure shows who holds what."""
    return [name.split("/", 2)[0].removeprefix("trainyard-") for name in names]


def test_a_node_holds_one_connection_idle_and_one_more_per_running_job(
    budget: tuple[Settings, Store],
) -> None:
    settings, store = budget
    with worker_process(settings, name="budget", concurrency=2):
        wait_for(lambda: connections(store) != [], 30, what="the node's connection")
        idle = connections(store)
        client = client_for(settings)
        run_ids = [submit_run(client, train_samples=60000, epochs=3, seed=n) for n in range(2)]

        def both_training() -> bool:
            runs = [read_run(store, run_id) for run_id in run_ids]
            return all(r.status == RunStatus.RUNNING and r.epochs_done >= 1 for r in runs)

        wait_for(both_training, 120, what="both runs to train")
        busy = [connections(store) for _ in range(10)]
        runs = until_finished(store, *run_ids)
        after = connections(store)
        for _ in range(50):  # a job's connection closes as the job returns
            if len(after) <= 1:
                break
            threading.Event().wait(0.2)
            after = connections(store)
    assert [run.status for run in runs] == [RunStatus.SUCCEEDED] * 2
    assert kinds(idle) == ["node"], idle
    for names in busy:
        assert len(names) <= 3, names
        assert kinds(names).count("node") == 1, names
    assert any(sorted(kinds(names)) == ["job", "job", "node"] for names in busy), busy
    assert kinds(after) == ["node"], after
