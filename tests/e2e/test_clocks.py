"""Hosts whose clocks disagree: real workers and a real web server under libfaketime (Debian's
`faketime`), on Redis and PostgreSQL. The store judges every lease on the database's clock, so a
host minutes fast or slow, or one whose clock jumps mid-run, changes no run's outcome.

PostgreSQL only: on SQLite the "server" is each process's own library, reading its own (faked)
clock. Every process on SQLite is on one host, so there is one clock there anyway.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from cli.client import Client
from shared.config import Settings
from shared.domain.status import RunStatus
from shared.ops.pgadmin import scratch_database
from shared.store.engine import Store
from shared.store.models import Epoch, Run
from tests.e2e.test_faults import LEASE, assert_resumed, fault_settings, held_by, holder_of
from tests.support.app import client_for, submit_run
from tests.support.machine import PG_SERVER, REDIS_URL, ROOT
from tests.support.processes import web_process, worker_processes
from tests.support.runs import epoch_rows, read_run
from tests.support.waiting import until_finished, wait_for

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
SITECUSTOMIZE = ROOT / "tests" / "faketime"

pytestmark = pytest.mark.skipif(
    not LIBFAKETIME.exists(), reason="libfaketime is not installed (apt-get install faketime)"
)

# Short runs, several epochs each: long enough for every node to sweep several times mid-run.
SHORT = {"train_samples": 2000, "epochs": 5}


def faked(offset: str = "", clock_file: Path | None = None) -> dict[str, str]:
    """The environment of a process whose wall clock is off by `offset` ("+2m", "-90s"), or
    whatever `clock_file` says at the moment (re-read every second: a clock that jumps)."""
    env = {
        "LD_PRELOAD": str(LIBFAKETIME),
        # Threads' timed waits use the monotonic clock: keep it true, as NTP would.
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "PYTHONPATH": str(SITECUSTOMIZE),
    }
    if clock_file is not None:
        return {**env, "FAKETIME_TIMESTAMP_FILE": str(clock_file), "FAKETIME_CACHE_DURATION": "1"}
    return {**env, "FAKETIME": offset}


@pytest.fixture()
def skewed(tmp_path: Path) -> Iterator[Settings]:
    """Settings on a PostgreSQL database of the test's own, Redis, and the faults' short lease."""
    with scratch_database(PG_SERVER, "trainyard_clocks") as url:
        yield fault_settings(tmp_path / "home", url, REDIS_URL)


@pytest.fixture()
def skewed_store(skewed: Settings) -> Iterator[Store]:
    store = Store(skewed.database_url)
    yield store
    store.close()


def assert_first_attempt_in_order(store: Store, runs: list[Run], epochs: int) -> None:
    """Each run succeeded on its first attempt, every epoch once, and its times in order."""
    for run in runs:
        assert run.status == RunStatus.SUCCEEDED, run.error
        assert (run.attempt, run.lost_attempts) == (1, []), f"run {run.id} was taken back"
        assert epoch_rows(store, run.id) == [(epoch, 1) for epoch in range(1, epochs + 1)]
        with store.session_scope() as session:
            recorded = [
                epoch.recorded_at for epoch in session.query(Epoch).filter_by(run_id=run.id)
            ]
        assert run.started_at is not None and run.finished_at is not None
        times: list[datetime] = [run.created_at, run.started_at, *recorded, run.finished_at]
        assert times == sorted(times), f"run {run.id}: a negative duration {times}"


def test_workers_minutes_fast_and_slow_and_a_web_server_off_lose_no_run(
    skewed: Settings, skewed_store: Store
) -> None:
    """One worker 2 minutes fast, one 2 minutes slow, the web server 5 minutes fast: each sweeps
    the other's leases every second, and the web answers from its own clock."""
    workers = {"fast": faked("+2m"), "slow": faked("-2m")}
    with (
        worker_processes(skewed, "fast", extra_env=workers["fast"]) as (fast,),
        worker_processes(skewed, "slow", extra_env=workers["slow"]) as (slow,),
        web_process(skewed, extra_env=faked("+5m")) as url,
    ):
        client = Client(url)
        run_ids = [int(client.submit({**SHORT, "seed": n})["id"]) for n in range(4)]
        runs = until_finished(
            skewed_store, *run_ids, alive=lambda: (fast.running(), slow.running())
        )
        answered = [client.run(run_id) for run_id in run_ids]
        listed = client.request("GET", "/api/workers")["workers"]
    assert_first_attempt_in_order(skewed_store, runs, SHORT["epochs"])
    assert {run.worker.split("@")[0] for run in runs if run.worker} == {"fast", "slow"}
    assert all(one["duration_seconds"] >= 0 for one in answered)
    # Alive by the database's clock, though the web's is 5 minutes ahead of both heartbeats.
    assert sorted((w["name"].split("@")[0], w["alive"]) for w in listed) == [
        ("fast", True),
        ("slow", True),
    ]


def running_with(store: Store, run_ids: list[int], epochs: int) -> bool:
    """Whether one of the runs is running with at least `epochs` epochs done."""
    runs = [read_run(store, run_id) for run_id in run_ids]
    return any(run.status == RunStatus.RUNNING and run.epochs_done >= epochs for run in runs)


def test_a_clock_that_jumps_mid_run_loses_no_run(
    skewed: Settings, skewed_store: Store, tmp_path: Path
) -> None:
    """An NTP step, a resume from suspend: one worker's clock jumps 10 minutes ahead mid-run,
    then 10 minutes behind true time, while the other's stays true."""
    clock = tmp_path / "clock"
    clock.write_text("+0\n")
    with (
        worker_processes(skewed, "jumpy", extra_env=faked(clock_file=clock)) as (jumpy,),
        worker_processes(skewed, "steady") as (steady,),
    ):
        client = client_for(skewed)
        run_ids = [submit_run(client, **SHORT, seed=n) for n in range(4)]
        wait_for(lambda: running_with(skewed_store, run_ids, 1), 120, what="a first epoch")
        clock.write_text("+10m\n")
        wait_for(lambda: running_with(skewed_store, run_ids, 3), 120, what="two epochs more")
        clock.write_text("-10m\n")
        runs = until_finished(
            skewed_store, *run_ids, alive=lambda: (jumpy.running(), steady.running())
        )
    assert_first_attempt_in_order(skewed_store, runs, SHORT["epochs"])
    assert {run.worker.split("@")[0] for run in runs if run.worker} == {"jumpy", "steady"}


def test_a_frozen_holder_on_a_slow_clock_is_taken_over_after_its_lease_not_before(
    skewed: Settings, skewed_store: Store
) -> None:
    """The lease still ends, and no sooner: a holder 2 minutes slow, frozen (SIGSTOP), is taken
    over by a node 2 minutes fast once its lease has run out on the database's clock."""
    long = {"train_samples": 60000, "epochs": 6, "seed": 1}
    with (
        worker_processes(skewed, "slow", extra_env=faked("-2m")) as (slow,),
        worker_processes(skewed, "fast", extra_env=faked("+2m")) as (fast,),
    ):
        workers = {"slow": slow, "fast": fast}
        run_id = submit_run(client_for(skewed), **long)
        sleepy, process = holder_of(skewed_store, run_id, workers, 2)
        (awake,) = set(workers) - {sleepy}
        process.signal_group(signal.SIGSTOP)
        try:
            # A renewal in flight when it froze may still land: the last one is read after.
            wait_for(lambda: held_by(skewed_store, run_id, awake, 0), 60, what="the takeover")
        finally:
            process.signal_group(signal.SIGCONT)
        [run] = until_finished(skewed_store, run_id)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.attempt == 2 and "lease expired" in run.lost_attempts[0]["reason"]
    with skewed_store.session_scope() as session:
        last_epoch = max(
            epoch.recorded_at for epoch in session.query(Epoch).filter_by(run_id=run_id, attempt=1)
        )
    taken_back = datetime.fromisoformat(run.lost_attempts[0]["at"])
    # Each epoch renews the lease: the take-back waited a whole lease after the last one.
    assert taken_back >= last_epoch + timedelta(seconds=LEASE - 0.2)
    assert_resumed(run, epoch_rows(skewed_store, run_id), long["epochs"])
