"""A worker node's connection budget, counted by PostgreSQL itself (pg_stat_activity): one for
the node while idle, one more per running job, none kept after a job ends; and jobs sharing
server connections through a transaction-pooling PgBouncer."""

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
from shared.store.lease import claim, finish, record_epoch, renew
from shared.store.migrate import upgrade
from tests.builders import epoch_record, make_run
from tests.e2e.test_faults import fault_settings
from tests.support.app import client_for, submit_run
from tests.support.machine import PG_SERVER, REDIS_URL
from tests.support.processes import worker_process
from tests.support.runs import epoch_rows, read_run
from tests.support.servers import pgbouncer_server
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


def test_jobs_take_turns_on_one_server_connection_through_pgbouncer() -> None:
    """Two jobs' stores behind a transaction-pooling PgBouncer with one server connection: each
    transaction may run on a connection the other job used last. With
    TRAINYARD_DATABASE_POOLER=transaction psycopg prepares nothing on the server, so every claim,
    renewal, epoch and finish goes through, as in the compose cluster."""
    epochs = 8  # past psycopg's prepare threshold (5 runs of one statement)
    with scratch_database(PG_SERVER, "trainyard_pooled") as url:
        upgrade(url)
        with pgbouncer_server(url, pool_size=1) as bouncer:
            jobs = [Store(bouncer, pooler="transaction", name=f"{TEST}/{n}") for n in (1, 2)]
            try:
                with jobs[0].session_scope() as session:
                    run_ids = [make_run(session).id for _ in jobs]
                leases = []
                for store, run_id in zip(jobs, run_ids, strict=True):
                    with store.session_scope() as session:
                        leases.append(claim(session, run_id, "pooled@test", 1, 30.0))
                for epoch in range(1, epochs + 1):
                    for store, lease in zip(jobs, leases, strict=True):
                        assert lease is not None
                        # As a job writes them: one statement each, on autocommit.
                        with store.autocommit() as connection:
                            renew(connection, lease)
                        with store.statement_scope() as unit:
                            record_epoch(unit, lease, epoch_record(epoch), b"weights")
                for store, lease in zip(jobs, leases, strict=True):
                    assert lease is not None
                    with store.session_scope() as session:
                        finish(session, lease, RunStatus.SUCCEEDED, test_accuracy=0.9)
                runs = [read_run(jobs[0], run_id) for run_id in run_ids]
                rows = [epoch_rows(jobs[0], run_id) for run_id in run_ids]
            finally:
                for store in jobs:
                    store.close()
    assert [run.status for run in runs] == [RunStatus.SUCCEEDED] * 2
    assert rows == [[(epoch, 1) for epoch in range(1, epochs + 1)]] * 2
