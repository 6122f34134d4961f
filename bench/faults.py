"""Inject each fault of the survival issue into a real stack and print what happened, and when.

    python -m bench.faults [--broker redis|rabbitmq|embedded]

Two single-job workers (the `trainyard cluster` layout) on the machine's broker (Redis unless
`--broker` says otherwise; the embedded one is a SQLite file of the bench's own) and a throwaway
PostgreSQL database, with the default heartbeat and lease. First the latency from submit to a
running run on idle workers; then each fault hits a run of the quickstart's recipe for 20 epochs
while it trains; then the database (a PostgreSQL server of the bench's own) crashes mid-run and
comes back; last the broker itself is lost with runs queued (Redis: a server of the bench's own
restarted without its data; RabbitMQ: a node of its own SIGKILLed and restarted).
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select

from bench.stack import Layout, Stack, stack, wait
from shared.domain.status import RunStatus
from shared.store.models import Epoch, Run, utcnow
from tests.support.machine import RABBIT_URL, REDIS_URL
from tests.support.servers import RedisServer, postgres_server, rabbit_node

LONG = {"epochs": 20, "seed": 1}
DATABASE_DOWN = 10.0  # seconds: several epochs, a third of the default lease
ROWS: list[tuple[str, str, str]] = []


def report(fault: str, outcome: str, figure: str) -> None:
    ROWS.append((fault, outcome, figure))
    print(f"  {fault}: {outcome}; {figure}", flush=True)


def holder(running: Stack, run_id: int, epochs: int = 2) -> Run:
    """The run once it is running with `epochs` epochs done."""
    return wait(
        lambda: (
            (run := running.run(run_id)).status == RunStatus.RUNNING
            and run.epochs_done >= epochs
            and run
        ),
        180,
        f"run {run_id} to run {epochs} epochs",
    )


def node_of(running: Stack, run: Run) -> str:
    return (run.worker or "").split("@")[0]


def redone(running: Stack, run_id: int) -> int:
    """Epochs a later attempt computed again (at most one per lost attempt is allowed)."""
    with running.store.session_scope() as session:
        rows = session.execute(select(Epoch.epoch, Epoch.attempt).where(Epoch.run_id == run_id))
        by_attempt: dict[int, list[int]] = {}
        for epoch, attempt in rows:
            by_attempt.setdefault(attempt, []).append(epoch)
    first = max(by_attempt.get(1, [0]))
    return sum(1 for epoch in by_attempt.get(2, []) if epoch <= first)


def taken_up(running: Stack, run_id: int, attempt: int = 2) -> Run:
    return wait(
        lambda: (
            (run := running.run(run_id)).attempt >= attempt
            and run.status == RunStatus.RUNNING
            and run
        ),
        300,
        f"run {run_id} to be taken up again",
        every=0.1,
    )


def worker_killed(running: Stack) -> None:
    run_id = running.submit(**LONG)
    run = holder(running, run_id)
    running.processes[node_of(running, run)].signal(signal.SIGKILL)
    began = time.monotonic()
    after = taken_up(running, run_id)
    recovered = time.monotonic() - began
    done = running.finished([run_id])[0]
    report(
        "worker SIGKILLed (host lost, OOM, docker kill)",
        f"requeued when its lease ran out, resumed on {node_of(running, after)} from its "
        f"checkpoint; {done.status.value}",
        f"taken up {recovered:.1f} s after the kill; {redone(running, run_id)} epoch(s) computed twice",
    )


def child_killed(running: Stack) -> None:
    run_id = running.submit(**LONG)
    run = holder(running, run_id)
    assert run.worker_pid
    os.kill(run.worker_pid, signal.SIGKILL)
    began = time.monotonic()
    taken_up(running, run_id)
    recovered = time.monotonic() - began
    done = running.finished([run_id])[0]
    report(
        "pool process killed",
        f"its node's next sweep (each heartbeat) requeued it, resumed from the checkpoint; {done.status.value}",
        f"taken up {recovered:.1f} s after the kill",
    )


def frozen(running: Stack) -> None:
    run_id = running.submit(**LONG)
    run = holder(running, run_id)
    sleeper = running.processes[node_of(running, run)]
    sleeper.signal(signal.SIGSTOP)
    began = time.monotonic()
    taken_up(running, run_id)
    recovered = time.monotonic() - began
    took_over = utcnow()
    time.sleep(5)
    sleeper.signal(signal.SIGCONT)
    done = running.finished([run_id])[0]
    with running.store.session_scope() as session:
        late = session.scalar(
            select(func.count())
            .select_from(Epoch)
            .where(Epoch.run_id == run_id, Epoch.attempt == 1, Epoch.recorded_at > took_over)
        )
    report(
        "holder frozen past its lease (SIGSTOP), then woken",
        f"taken over; the old attempt's writes refused, it stopped; {done.status.value} by "
        f"{node_of(running, done)}",
        f"taken up {recovered:.1f} s after the freeze; {late} late write(s) accepted",
    )


def terminated(running: Stack) -> None:
    run_id = running.submit(**LONG)
    run = holder(running, run_id)
    leaving = running.processes[node_of(running, run)]
    leaving.signal(signal.SIGTERM, group=False)
    began = time.monotonic()
    leaving.popen.wait(timeout=120)
    exited = time.monotonic() - began
    taken_up(running, run_id)
    resumed = time.monotonic() - began
    done = running.finished([run_id])[0]
    report(
        "worker stopped with SIGTERM (compose stop, upgrade)",
        f"handed over: checkpoint, back in the queue, not a lost attempt "
        f"({len(done.lost_attempts)} lost); {done.status.value}",
        f"worker exited {exited:.1f} s after SIGTERM; resumed elsewhere after {resumed:.1f} s",
    )


def cancelled(running: Stack) -> None:
    run_id = running.submit(**LONG)
    holder(running, run_id)
    began = time.monotonic()
    running.client.cancel(run_id)
    accepted = utcnow()
    done = wait(lambda: (r := running.run(run_id)).status.finished and r, 30, "the cancel", 0.02)
    took = time.monotonic() - began
    with running.store.session_scope() as session:
        late = session.scalar(
            select(func.count())
            .select_from(Epoch)
            .where(Epoch.run_id == run_id, Epoch.recorded_at > accepted)
        )
    report(
        "cancel a running run",
        f"stopped after its current batch; {done.status.value}, epochs kept",
        f"{took:.2f} s from the request; {late} epoch(s) recorded after it",
    )


def latency(running: Stack) -> None:
    """Submit to running, on idle workers: how long the broker takes to hand a job over."""
    seconds = []
    for seed in range(7):
        began = time.monotonic()
        run_id = running.submit(train_samples=1000, epochs=1, seed=seed)

        def claimed(run_id: int = run_id) -> bool:
            return running.run(run_id).status != RunStatus.QUEUED

        wait(claimed, 60, "the claim", 0.01)
        seconds.append(time.monotonic() - began)
        running.finished([run_id])
    first, rest = seconds[0], sorted(seconds[1:])
    report(
        "submit to running, idle workers",
        "the broker hands the message to a free worker, which claims the run",
        f"median {rest[len(rest) // 2]:.2f} s (max {rest[-1]:.2f} s) of {len(rest)}, "
        f"after a first of {first:.2f} s",
    )


def database_restarted(home: Path, broker: str) -> None:
    with (
        postgres_server() as postgres,
        stack(
            home / "database", Layout(2, 1, 1), server=postgres.url, broker_url=broker
        ) as running,
    ):
        run_id = running.submit(**LONG)
        before = holder(running, run_id).epochs_done
        postgres.crash()
        time.sleep(DATABASE_DOWN)
        postgres.start()
        back = time.monotonic()
        wait(lambda: running.run(run_id).epochs_done > before, 120, "the next epoch", every=0.1)
        next_epoch = time.monotonic() - back
        done = running.finished([run_id])[0]
    report(
        f"the database crashed mid-run, back {DATABASE_DOWN:g} s later",
        f"the job's writes waited for it; {done.status.value}, attempt {done.attempt}, "
        f"{len(done.lost_attempts)} lost",
        f"next epoch recorded {next_epoch:.1f} s after the database was back",
    )


def redis_lost(home: Path) -> None:
    server = RedisServer(home / "redis")
    server.start()
    try:
        with stack(home / "broker", Layout(2, 1, 1), broker_url=server.url) as running:
            ids = [running.submit(train_samples=5000, epochs=2, seed=n) for n in range(20)]
            server.kill()
            server.start()
            began = time.monotonic()
            runs = running.finished(ids)
            took = time.monotonic() - began
    finally:
        server.kill()
    report_lost("Redis restarted without its data", "the sweeps sent the lost messages again",
                runs, took)  # fmt: skip


def rabbitmq_lost(home: Path) -> None:
    with (
        rabbit_node() as node,
        stack(home / "broker", Layout(2, 1, 1), broker_url=node.url) as running,
    ):
        ids = [running.submit(train_samples=5000, epochs=2, seed=n) for n in range(20)]
        node.stop(kill=True)
        node.start()
        began = time.monotonic()
        runs = running.finished(ids)
        took = time.monotonic() - began
    report_lost("RabbitMQ node SIGKILLed and restarted",
                "the quorum queue kept the confirmed messages on disk", runs, took)  # fmt: skip


def report_lost(fault: str, outcome: str, runs: list[Run], took: float) -> None:
    succeeded = sum(run.status == RunStatus.SUCCEEDED for run in runs)
    twice = sum(run.attempt > 1 for run in runs)
    report(
        f"{fault}, {len(runs)} runs queued",
        f"{outcome}; {succeeded}/{len(runs)} succeeded",
        f"all done {took:.0f} s after the restart; {twice} run(s) claimed twice",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["redis", "rabbitmq", "embedded"], default="redis")
    args = parser.parse_args()
    print(
        f"faults on {args.broker}: each one injected into a stack of 2 workers "
        "(default heartbeat and lease)"
    )
    scenarios: list[Callable[[Stack], None]] = [
        latency,
        worker_killed,
        child_killed,
        frozen,
        terminated,
        cancelled,
    ]
    with tempfile.TemporaryDirectory(prefix="trainyard-faults-") as folder:
        home = Path(folder)
        for number, scenario in enumerate(scenarios):
            broker = {
                "redis": REDIS_URL,
                "rabbitmq": RABBIT_URL,
                "embedded": f"sqla+sqlite:///{home / str(number) / 'broker.db'}",
            }[args.broker]
            with stack(home / str(number), Layout(2, 1, 1), broker_url=broker) as running:
                scenario(running)
        database_restarted(home, broker)
        if args.broker == "redis":
            redis_lost(home)
        elif args.broker == "rabbitmq":
            rabbitmq_lost(home)
    print("\n| fault | what trainyard does | measured |\n|---|---|---|")
    for fault, outcome, figure in ROWS:
        print(f"| {fault} | {outcome} | {figure} |")


if __name__ == "__main__":
    main()
