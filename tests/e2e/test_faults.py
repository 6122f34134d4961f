"""A run survives its worker: real Celery workers on a PostgreSQL store, killed, frozen, stopped.

Each test is a fault from the survival issue, with its figure asserted. The lease is short here
(8 s, renewed every second) so the suite stays quick; `bench/faults.py` measures the defaults on
each broker. The guarantees rest on the store, not on the broker, so each fault runs once, on one
broker, and each broker meets a fault of its own: a killed host on RabbitMQ (which hands the dead
consumer's message straight back), SIGTERM on the embedded broker, the rest on Redis;
test_brokers.py runs a job on each, and the compose tier kills and recreates workers on Redis.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from shared.config import Settings
from shared.domain.status import RunStatus
from shared.ops.pgadmin import scratch_database
from shared.store.engine import Store
from shared.store.migrate import upgrade
from shared.store.models import Epoch, Run, utcnow
from tests.support.app import client_for, submit_run
from tests.support.machine import PG_SERVER, REDIS_URL, broker_url, mnist_dir
from tests.support.metrics import scrape, value
from tests.support.processes import TrainyardProcess, worker_process, worker_processes
from tests.support.runs import epoch_rows, read_run
from tests.support.servers import postgres_server, rabbit_node, redis_server
from tests.support.waiting import until_finished, wait_for

LEASE = 8.0
# About 1.4 s an epoch on one thread: a fault lands after epoch 2, and the run goes on for several
# more, long enough to be caught mid-run (the frozen holder needs a few more, below).
LONG = {"train_samples": 60000, "epochs": 8, "seed": 1}


@pytest.fixture()
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The broker a test runs on: the machine's Redis unless the test names another."""
    return broker_url(getattr(request, "param", "redis"), tmp_path)


def on(kind: str) -> pytest.MarkDecorator:
    """Run the test on this broker."""
    return pytest.mark.parametrize("broker", [kind], indirect=True)


def fault_settings(home: Path, database_url: str, broker: str) -> Settings:
    """Settings on a migrated database, a queue of the test's own and the short lease."""
    upgrade(database_url)
    return Settings(
        home=home,
        database_url=database_url,
        broker_url=broker,
        data_dir=mnist_dir(),
        allow_download=False,
        secret_key="faults",
        queue=f"trainyard-faults-{uuid.uuid4().hex[:8]}",
        heartbeat_interval=1.0,
        heartbeat_timeout=LEASE,
        tf_threads=1,
    )


@pytest.fixture()
def faulty(tmp_path: Path, broker: str) -> Iterator[Settings]:
    """Settings on a PostgreSQL database of the test's own."""
    with scratch_database(PG_SERVER, "trainyard_faults") as url:
        yield fault_settings(tmp_path / "home", url, broker)


@pytest.fixture()
def faulty_store(faulty: Settings) -> Iterator[Store]:
    """The store of `faulty`'s database."""
    store = Store(faulty.database_url)
    yield store
    store.close()


def submit(settings: Settings, **params: object) -> int:
    return submit_run(client_for(settings), **params)


def held_by(store: Store, run_id: int, name: str, min_epochs: int = 1) -> Run | None:
    run = read_run(store, run_id)
    held = run.status == RunStatus.RUNNING and (run.worker or "").startswith(f"{name}@")
    return run if held and run.epochs_done >= min_epochs else None


def holder_of(
    store: Store, run_id: int, workers: dict[str, TrainyardProcess], min_epochs: int
) -> tuple[str, TrainyardProcess]:
    """Wait until one of `workers` (by name) holds the run with `min_epochs` done; return it."""
    name = wait_for(
        lambda: next((n for n in workers if held_by(store, run_id, n, min_epochs)), None),
        120,
        what=f"{min_epochs} epochs of run {run_id} on one of {sorted(workers)}",
    )
    return name, workers[name]


def assert_resumed(run: Run, rows: list[tuple[int, int]], total: int) -> None:
    """Every epoch recorded once, each after the first attempt by the second; none lost."""
    assert [epoch for epoch, _ in rows] == list(range(1, total + 1))
    first = [epoch for epoch, attempt in rows if attempt == 1]
    assert first and first == list(range(1, len(first) + 1))
    assert all(attempt == run.attempt for epoch, attempt in rows if epoch > len(first))


@on("rabbitmq")
def test_a_killed_worker_host_loses_nothing_and_its_run_resumes_elsewhere(
    faulty: Settings, faulty_store: Store
) -> None:
    with worker_processes(faulty, "first", "second") as started:
        workers = dict(zip(("first", "second"), started, strict=True))
        run_id = submit(faulty, **LONG)
        doomed, process = holder_of(faulty_store, run_id, workers, 2)
        (rescuer,) = set(workers) - {doomed}
        process.signal_group(signal.SIGKILL)  # the host is gone: main process and child
        killed = time.monotonic()
        wait_for(lambda: held_by(faulty_store, run_id, rescuer, 0), 60, what="the rescue")
        recovery = time.monotonic() - killed
        [run] = until_finished(faulty_store, run_id)
    print(f"\nworker killed: run taken up again after {recovery:.1f} s (lease {LEASE:g} s)")
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert recovery < LEASE + 5
    assert run.attempt == 2 and "lease expired" in run.lost_attempts[0]["reason"]
    assert_resumed(run, epoch_rows(faulty_store, run_id), LONG["epochs"])
    assert_takeover_counted(faulty, "lease_expired")


def assert_takeover_counted(settings: Settings, reason: str) -> None:
    """/metrics counts the one takeover, by its reason, and every epoch once: the dead attempt's
    epochs and the rescuer's add up to the run's, none recomputed (it resumed from a checkpoint)."""
    samples = scrape(settings)
    other = ({"lease_expired", "pool_process_died"} - {reason}).pop()
    assert value(samples, "trainyard_lease_takeovers_total", reason=reason) == 1
    assert value(samples, "trainyard_lease_takeovers_total", reason=other) == 0
    assert value(samples, "trainyard_runs_finished_total", status="succeeded") == 1
    assert value(samples, "trainyard_epoch_duration_seconds_count") == LONG["epochs"]
    assert value(samples, "trainyard_queue_wait_seconds_count") == 2  # two claims


def test_a_killed_pool_process_is_replaced_and_its_run_resumes_within_15_s(
    faulty: Settings, faulty_store: Store
) -> None:
    with worker_process(faulty, name="fragile"):
        run_id = submit(faulty, **LONG)
        run = wait_for(lambda: held_by(faulty_store, run_id, "fragile", 2), 120, what="2 epochs")
        assert run.worker_pid
        os.kill(run.worker_pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(
            lambda: (
                (after := read_run(faulty_store, run_id)).attempt == 2 and after.status != "queued"
            ),
            60,
            what="the run to be claimed again",
        )
        resumed = time.monotonic() - killed
        [run] = until_finished(faulty_store, run_id)
    print(f"\npool process killed: run resumed after {resumed:.1f} s")
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert resumed < 15
    assert "pool process" in run.lost_attempts[0]["reason"]
    assert_resumed(run, epoch_rows(faulty_store, run_id), LONG["epochs"])
    assert_takeover_counted(faulty, "pool_process_died")


def test_a_frozen_holder_that_wakes_up_writes_nothing_and_flips_nothing(
    faulty: Settings, faulty_store: Store
) -> None:
    # Room after the takeover for the other worker's epochs, then for the frozen one to wake up
    # and find out while the run still trains.
    long = {**LONG, "epochs": 10}
    with worker_processes(faulty, "first", "second") as started:
        workers = dict(zip(("first", "second"), started, strict=True))
        run_id = submit(faulty, **long)
        sleepy, process = holder_of(faulty_store, run_id, workers, 2)
        (awake,) = set(workers) - {sleepy}
        process.signal_group(signal.SIGSTOP)
        try:
            wait_for(lambda: held_by(faulty_store, run_id, awake, 0), 60, what="the takeover")
            taken_over = utcnow()
            wait_for(lambda: held_by(faulty_store, run_id, awake, 5), 120, what=f"{awake}'s epochs")
        finally:
            process.signal_group(signal.SIGCONT)
        # The old attempt wakes mid-epoch, with a lease another attempt replaced.
        wait_for(lambda: "lost its lease" in process.output(), 30, what=f"{sleepy} to notice")
        during = read_run(faulty_store, run_id)
        [run] = until_finished(faulty_store, run_id)
    assert during.status == RunStatus.RUNNING and (during.worker or "").startswith(f"{awake}@")
    assert run.status == RunStatus.SUCCEEDED and (run.worker or "").startswith(f"{awake}@")
    with faulty_store.session_scope() as session:
        late = session.scalars(
            select(Epoch).where(
                Epoch.run_id == run_id, Epoch.attempt == 1, Epoch.recorded_at > taken_over
            )
        ).all()
    assert late == [], "the frozen attempt wrote after it lost the run"
    assert_resumed(run, epoch_rows(faulty_store, run_id), long["epochs"])


def test_a_database_restart_mid_run_fails_nothing_and_loses_no_epoch(tmp_path: Path) -> None:
    """The store crashes and comes back (a restart, a failover) while a run trains: its writes
    wait for it, and the run goes on under its first attempt, every epoch recorded once."""
    with postgres_server() as postgres:
        settings = fault_settings(tmp_path / "home", postgres.url, REDIS_URL)
        store = Store(postgres.url)
        try:
            with worker_process(settings, name="patient") as patient:
                run_id = submit(settings, **LONG)
                wait_for(lambda: held_by(store, run_id, "patient", 2), 120, what="two epochs")
                postgres.crash()
                time.sleep(LEASE / 2)  # longer than an epoch, shorter than the lease
                postgres.start()
                [run] = until_finished(store, run_id)
                output = patient.output()
            rows = epoch_rows(store, run_id)
        finally:
            store.close()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert (run.attempt, run.lost_attempts) == (1, [])
    assert rows == [(epoch, 1) for epoch in range(1, LONG["epochs"] + 1)]
    assert "the store is unreachable" in output, "no write met the outage"


# Enough to keep both of a worker's two pool processes busy with more still queued.
QUEUED = 8


def test_a_broker_restarted_empty_loses_no_queued_run(
    faulty: Settings, faulty_store: Store, tmp_path: Path
) -> None:
    with redis_server(tmp_path / "redis") as redis:
        broker = faulty.with_overrides(broker_url=redis.url)
        with worker_process(broker, name="steady", concurrency=2):
            run_ids = [submit(broker, train_samples=2000, epochs=1, seed=n) for n in range(QUEUED)]
            redis.kill()  # with it every message still queued
            redis.start()
            restarted = time.monotonic()
            runs = until_finished(faulty_store, *run_ids, timeout=180)
            took = time.monotonic() - restarted
    print(f"\nRedis restarted empty: all {len(runs)} queued runs done {took:.0f} s later")
    assert_each_ran_once(faulty_store, runs)


def test_a_rabbitmq_node_killed_and_restarted_loses_no_queued_run(
    faulty: Settings, faulty_store: Store
) -> None:
    """SIGKILL, not a clean stop: the quorum queue's messages are on disk, confirmed before the
    submits answered, and come back with the node."""
    with rabbit_node() as rabbit:
        broker = faulty.with_overrides(broker_url=rabbit.url)
        with worker_process(broker, name="steady", concurrency=2):
            run_ids = [submit(broker, train_samples=2000, epochs=1, seed=n) for n in range(QUEUED)]
            rabbit.stop(kill=True)
            rabbit.start()
            restarted = time.monotonic()
            runs = until_finished(faulty_store, *run_ids, timeout=180)
            took = time.monotonic() - restarted
    print(
        f"\nRabbitMQ node killed and restarted: all {len(runs)} queued runs done {took:.0f} s later"
    )
    assert_each_ran_once(faulty_store, runs)


def assert_each_ran_once(store: Store, runs: list[Run]) -> None:
    assert [run.status for run in runs] == [RunStatus.SUCCEEDED] * len(runs)
    taken_back = {run.id: run.lost_attempts for run in runs if run.attempt != 1}
    assert taken_back == {}, f"a run was claimed twice: {taken_back}"
    for run in runs:
        assert epoch_rows(store, run.id) == [(1, 1)]


@on("embedded")
def test_sigterm_hands_the_run_over_and_the_worker_exits_within_20_s(
    faulty: Settings, faulty_store: Store
) -> None:
    with worker_processes(faulty, "first", "second") as started:
        workers = dict(zip(("first", "second"), started, strict=True))
        run_id = submit(faulty, **LONG)
        leaving, process = holder_of(faulty_store, run_id, workers, 2)
        (staying,) = set(workers) - {leaving}
        process.terminate()  # `docker compose stop`: SIGTERM to the main process
        stopped = time.monotonic()
        process.wait(timeout=20)
        exited = time.monotonic() - stopped
        [run] = until_finished(faulty_store, run_id)
    print(f"\nSIGTERM: the worker exited after {exited:.1f} s; the run finished elsewhere")
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert (run.worker or "").startswith(f"{staying}@")
    assert run.lost_attempts == [], "a hand-over is not a lost attempt"
    assert_resumed(run, epoch_rows(faulty_store, run_id), LONG["epochs"])


def test_a_run_whose_worker_dies_every_time_fails_naming_each_lost_attempt(
    faulty: Settings, faulty_store: Store
) -> None:
    with worker_process(faulty, name="cursed"):
        run_id = submit(faulty, **LONG)
        for attempt in range(1, faulty.max_attempts + 1):
            run = wait_for(
                lambda attempt=attempt: (
                    (r := held_by(faulty_store, run_id, "cursed", 0)) and r.attempt == attempt and r
                ),
                90,
                what=f"attempt {attempt}",
            )
            assert run.worker_pid
            os.kill(run.worker_pid, signal.SIGKILL)
        [run] = until_finished(faulty_store, run_id, timeout=60)
    assert run.status == RunStatus.FAILED
    assert f"gave up after {faulty.max_attempts} lost attempts" in (run.error or "")
    for attempt in range(1, faulty.max_attempts + 1):
        assert f"attempt {attempt} on cursed@" in (run.error or "")
