"""A big cluster's control plane against one PostgreSQL: many simulated worker nodes, trainyard's
own store calls, the training replaced by a sleep.

    python -m bench.control_plane --nodes 200 --seconds 120 --postgres URL [--pgbouncer URL|start]

Each node is two threads, as a worker node is a main process and a pool process: the node's
(trainyard's `Node`: its heartbeat and its offer to do the cluster's sweep of expired leases, on
one connection) and its job's (one run at a time: the claim, a look at the lease every second that
renews it every heartbeat, as a job's watch does, an epoch write with a small checkpoint after
each epoch's sleep, the finish, on one connection of the job's own, as `worker.jobs` does).
Epochs last `--epoch-seconds` give or take a quarter, so the writes do not come in lockstep. The nodes run in `--processes` processes
(default one per core): 200 nodes' threads in one Python process would queue on its GIL, and the
bench would time that queue instead of the store (one per 25 nodes, 8 here, was slower again:
p99 812 ms against 400 ms with 2, the processes then contend for the 2 cores), with a long GIL
switch interval (SWITCH_INTERVAL: their threads only wait on the network). A write's time
is `time.perf_counter` around the epoch's write (`record_epoch` in its `statement_scope`, as a
job writes it) and nothing else. Runs are submitted at a steady rate (the web's `create_run`, then the message) to a multiprocessing queue
standing in for the broker. Halfway, a tenth of the nodes are killed: their threads stop dead,
writing nothing more, and their runs wait for the lease to run out and a sweep to take them back.

`--pgbouncer start` runs a PgBouncer of the bench's own (transaction pooling) on a loopback port
in front of `--postgres`; a URL uses one already running. `db_connections_peak` counts the server
connections to the bench's database (pg_stat_activity), sampled twice a second. The last line:

    control plane: nodes=N runs=N succeeded=N failed=N lost_epochs=N takeovers=N
        db_connections_peak=N write_p99_ms=X sweeps_per_s=X        (one line)
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import queue
import random
import resource
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.queues import Queue as ProcessQueue
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.util import LRUCache

from shared.config import Settings
from shared.domain.lease import CancelRequested, EpochRecord, LeaseLost
from shared.domain.params import Hyperparams
from shared.domain.status import RunStatus
from shared.ops.heap import freeze_startup_heap
from shared.ops.pgadmin import scratch_database
from shared.store.engine import Store
from shared.store.lease import LeaseKeeper, claim, finish, record_epoch, resume_point
from shared.store.migrate import upgrade
from shared.store.models import Epoch, Run
from shared.store.runs import create_run, mark_sent
from tests.support.servers import pgbouncer_server
from worker.jobs import WATCH_INTERVAL
from worker.node import Node

CHECKPOINT = 16 * 1024  # bytes: a small model's weights
PARAMS = Hyperparams(epochs=5, train_samples=1000, seed=1)
JITTER = 0.25  # an epoch lasts epoch_seconds give or take this share of it
# A simulating process's threads all wait on the network and let go of the GIL at every wait, so
# a long switch interval costs them nothing; the default 5 ms made a hundred nodes' threads take
# the GIL from each other in a convoy that real hosts, one interpreter each, never form (epoch
# writes' p99 at 0.5 ms: 1,933 ms; at 5 ms: 47-169 ms; at 50 ms: 27-37 ms, on this machine).
SWITCH_INTERVAL = 0.05


@dataclass
class Figures:
    """What the simulated cluster measured."""

    write_ms: list[float] = field(default_factory=list)
    retaken: dict[int, float] = field(default_factory=dict)  # run id -> when claimed again
    errors: list[str] = field(default_factory=list)
    sweeps: int = 0
    rss_mib: float = 0.0  # the process's peak resident memory
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def wrote(self, seconds: float) -> None:
        with self.lock:
            self.write_ms.append(seconds * 1000)

    def picklable(self) -> tuple[list[float], dict[int, float], list[str], int, float]:
        return self.write_ms, self.retaken, self.errors, self.sweeps, self.rss_mib

    def error(self, what: str) -> None:
        with self.lock:
            if len(self.errors) < 20:
                self.errors.append(what)


@dataclass
class SimNode:
    """One worker node: its `Node` thread and its one job thread."""

    index: int
    settings: Settings
    url: str
    broker: ProcessQueue[int]
    figures: Figures
    epoch_seconds: float
    compiled: LRUCache[Any, Any]  # the statements this process compiled, for all its nodes
    dead: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    job_ident: int | None = None
    node: Node | None = None

    @property
    def name(self) -> str:
        return f"sim{self.index}@bench"

    def start(self) -> list[threading.Thread]:
        store = Store(
            self.url, pooler=self.settings.database_pooler, name=f"trainyard-node/{self.name}",
            connections=1,
        )  # fmt: skip
        store.engine.update_execution_options(compiled_cache=self.compiled)
        self.node = Node(
            self.name,
            self.settings,
            store,
            lambda run_id, _queue: self.broker.put(run_id),
            child_alive=lambda pid: not self.dead.is_set() and pid == self.job_ident,
        )
        threads = [
            threading.Thread(target=self._node_loop, daemon=True),
            threading.Thread(target=self._job_loop, daemon=True),
        ]
        for thread in threads:
            thread.start()
        return threads

    def _wait(self, seconds: float) -> bool:
        """Sleep; False when the node was killed or the bench is over meanwhile."""
        return not (self.dead.wait(seconds) or self.done.is_set() or self.dead.is_set())

    def _node_loop(self) -> None:
        assert self.node is not None
        self.node.register()
        # Nodes start spread over one interval, as a real cluster's do.
        if not self._wait(random.uniform(0, self.settings.heartbeat_interval)):
            return
        while self._wait(self.settings.heartbeat_interval):
            try:
                self.node.sweep(look_at_broker=False, beat=self.node.beat())
            except Exception as exc:
                self.figures.error(f"node: {type(exc).__name__}: {exc}")
        if self.dead.is_set():
            self.node.store.engine.dispose()  # a killed host's connections drop

    def _job_loop(self) -> None:
        self.job_ident = threading.get_native_id()
        while not (self.dead.is_set() or self.done.is_set()):
            try:
                run_id = self.broker.get(timeout=0.5)
            except queue.Empty:
                continue
            assert self.node is not None
            store = self.node.store.sibling(f"trainyard-job/{run_id}/{self.name}")
            store.engine.update_execution_options(compiled_cache=self.compiled)
            try:
                self._run(store, run_id)
            except Exception as exc:
                self.figures.error(f"job: {type(exc).__name__}: {exc}")
            finally:
                store.close()

    def _run(self, store: Store, run_id: int) -> None:
        with store.statement_scope() as connection:
            lease = claim(
                connection, run_id, self.name, self.job_ident or 0, self.settings.heartbeat_timeout
            )
        if lease is None:
            return
        with store.session_scope() as session:
            checkpoint = resume_point(session, lease)
        if lease.attempt > 1:
            with self.figures.lock:
                self.figures.retaken.setdefault(run_id, time.time())
        first = checkpoint.epoch + 1 if checkpoint else 1
        keeper = LeaseKeeper(lease, self.settings.heartbeat_interval)
        try:
            for epoch in range(first, PARAMS.epochs + 1):
                if not self._train_epoch(store, keeper, epoch):
                    return  # killed: nothing more is written
            with store.statement_scope() as connection:
                finish(connection, lease, RunStatus.SUCCEEDED, test_loss=0.1, test_accuracy=0.9)
        except (LeaseLost, CancelRequested):
            return

    def _train_epoch(self, store: Store, keeper: LeaseKeeper, epoch: int) -> bool:
        """Sleep an epoch, checking the lease as a job's watch does; then record the epoch."""
        left = self.epoch_seconds * random.uniform(1 - JITTER, 1 + JITTER)
        while left > 0:
            step = min(left, WATCH_INTERVAL, self.settings.heartbeat_interval)
            if not self._wait(step):
                return False
            left -= step
            if left > 0:
                with store.autocommit() as connection:
                    keeper.check(connection)
        record = EpochRecord(epoch, 0.5, 0.8, self.epoch_seconds, 0.5, 0.8)
        checkpoint = os.urandom(CHECKPOINT)
        started = time.perf_counter()
        with store.statement_scope() as session:
            record_epoch(session, keeper.lease, record, checkpoint)
        self.figures.wrote(time.perf_counter() - started)
        keeper.renewed()
        return True


def node_group(
    indices: list[int],
    settings: Settings,
    url: str,
    epoch_seconds: float,
    broker: ProcessQueue[int],
    control: ProcessQueue[list[int] | None],
    results: ProcessQueue[object],
) -> None:
    """One process's nodes: start them, kill those `control` names, stop on None, report."""
    random.seed(os.getpid())
    sys.setswitchinterval(SWITCH_INTERVAL)
    figures = Figures()
    # A host compiles each of trainyard's statements once, on its own CPU; a hundred nodes in
    # one process each compiling them (an engine's cache is its own) put a hundred hosts'
    # start-up work on this machine's 2 cores in the bench's first seconds, beside PostgreSQL.
    # The nodes of a process share one cache of compiled statements.
    compiled: LRUCache[Any, Any] = LRUCache(1000)
    nodes = {
        i: SimNode(i, settings, url, broker, figures, epoch_seconds, compiled) for i in indices
    }
    threads = [thread for node in nodes.values() for thread in node.start()]
    freeze_startup_heap()  # as a worker's processes do once started
    # Nor does a real host's collector stop a hundred nodes at once: this process's heap is a
    # hundred nodes' (each its engines, pools, sessions), and a full collection walked it all
    # while every one of its nodes stood still (pauses of 190-373 ms every 10-20 s were most of
    # the epoch writes' p99). The cycles left uncollected for the bench's minutes show in the
    # peak RSS it prints.
    gc.disable()
    results.put("ready")
    while (doomed := control.get()) is not None:
        for index in doomed:
            nodes[index].dead.set()
    for node in nodes.values():
        node.done.set()
    for thread in threads:
        thread.join(timeout=settings.heartbeat_interval + 2)
    figures.sweeps = sum(node.node.duties_done for node in nodes.values() if node.node)
    figures.rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for node in nodes.values():
        if node.node is not None:
            node.node.store.close()
    results.put(figures.picklable())


def count_connections(monitor: Store, database: str) -> int:
    with monitor.engine.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = :db"
                    " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                ),
                {"db": database},
            ).scalar_one()
        )


def simulate(args: argparse.Namespace, database_url: str, client_url: str) -> str:
    """Run the cluster on `client_url` (the database itself or a pooler in front of it)."""
    pooled = client_url != database_url
    settings = Settings(
        database_url=client_url,
        database_pooler="transaction" if pooled else "",
        heartbeat_interval=args.heartbeat,
        heartbeat_timeout=args.lease,
        max_attempts=3,
    )
    upgrade(database_url)
    database = make_url(database_url).database or ""
    monitor = Store(database_url, name="trainyard-bench")
    submitter = Store(client_url, pooler=settings.database_pooler, name="trainyard-web/bench")
    context = multiprocessing.get_context("spawn")
    broker: ProcessQueue[int] = context.Queue()
    results: ProcessQueue[object] = context.Queue()
    processes = min(args.nodes, args.processes or os.cpu_count() or 1)
    groups = [list(range(args.nodes))[p::processes] for p in range(processes)]
    controls: list[ProcessQueue[list[int] | None]] = [context.Queue() for _ in groups]
    workers = [
        context.Process(
            target=node_group,
            args=(group, settings, client_url, args.epoch_seconds, broker, control, results),
            daemon=True,
        )
        for group, control in zip(groups, controls, strict=True)
    ]
    print(
        f"{args.nodes} nodes in {processes} processes, one job each;"
        f" epochs of {args.epoch_seconds:g} s ± {JITTER:.0%} x {PARAMS.epochs};"
        f" lease {args.lease:g} s, heartbeat {args.heartbeat:g} s;"
        f" {'through PgBouncer (transaction pooling)' if pooled else 'direct connections'}",
        flush=True,
    )
    for worker in workers:
        worker.start()
    for _ in workers:
        results.get(timeout=120)  # "ready": every node's threads are up
    killed_at: dict[int, float] = {}
    peak = 0
    run_ids: list[int] = []
    # Runs a second: 80% of what the nodes can train, so the queue stays short and steady.
    rate = 0.8 * args.nodes / (PARAMS.epochs * args.epoch_seconds)
    started = time.monotonic()
    killed = False
    next_submit = started
    while time.monotonic() - started < args.seconds:
        now = time.monotonic()
        while next_submit <= now:
            with submitter.session_scope() as session:
                run = create_run(session, PARAMS, name="bench")
            run_ids.append(run.id)
            with submitter.session_scope() as session:
                mark_sent(session, run.id, f"bench-{run.id}")
            broker.put(run.id)
            next_submit += 1 / rate
        if not killed and now - started >= args.seconds / 2:
            killed = True
            doomed = set(random.sample(range(args.nodes), max(1, args.nodes // 10)))
            with monitor.session_scope() as session:
                held = session.execute(
                    select(Run.id).where(
                        Run.status == RunStatus.RUNNING,
                        Run.worker.in_([f"sim{index}@bench" for index in doomed]),
                    )
                ).all()
            for group, control in zip(groups, controls, strict=True):
                control.put([index for index in group if index in doomed])
            for (run_id,) in held:
                killed_at[run_id] = time.time()
            print(
                f"{now - started:.0f} s: killed {len(doomed)} nodes holding {len(held)} runs",
                flush=True,
            )
        peak = max(peak, count_connections(monitor, database))
        time.sleep(0.5)
    # Drain: no more submits; every run must end (the killed nodes' after the lease).
    drain_until = time.monotonic() + args.lease + 60
    while time.monotonic() < drain_until:
        with monitor.session_scope() as session:
            busy = session.scalar(
                select(func.count()).where(Run.status.in_([RunStatus.QUEUED, RunStatus.RUNNING]))
            )
        peak = max(peak, count_connections(monitor, database))
        if not busy:
            break
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    for control in controls:
        control.put(None)
    figures = Figures()
    sweeps = 0
    for _ in workers:
        write_ms, retaken, errors, swept, rss_mib = results.get(timeout=60)  # type: ignore[misc]
        figures.rss_mib = max(figures.rss_mib, rss_mib)
        figures.write_ms.extend(write_ms)
        figures.retaken.update(retaken)
        figures.errors.extend(errors[: max(0, 20 - len(figures.errors))])
        sweeps += swept
    for worker in workers:
        worker.join(timeout=10)
    broker.cancel_join_thread()
    with monitor.session_scope() as session:
        statuses = dict(
            session.execute(select(Run.status, func.count()).group_by(Run.status)).all()
        )
        recorded = session.scalar(select(func.count()).select_from(Epoch)) or 0
        takeovers = session.scalar(select(func.sum(Run.attempt - 1)).where(Run.attempt > 1)) or 0
        succeeded_runs = statuses.get(RunStatus.SUCCEEDED, 0)
    monitor.close()
    submitter.close()
    lost_epochs = succeeded_runs * PARAMS.epochs - recorded
    writes = sorted(figures.write_ms)
    p50 = writes[len(writes) // 2] if writes else 0.0
    p99 = writes[min(len(writes) - 1, int(len(writes) * 0.99))] if writes else 0.0
    resumed = max(
        (figures.retaken[run] - at for run, at in killed_at.items() if run in figures.retaken),
        default=0.0,
    )
    print(
        f"{len(writes)} epoch writes: p50 {p50:.1f} ms, p99 {p99:.1f} ms;"
        f" killed nodes' runs resumed after at most {resumed:.1f} s"
        f" (lease {args.lease:g} s + 10 s = {args.lease + 10:g} s);"
        f" {sweeps} expired-lease sweeps in {elapsed:.0f} s across {args.nodes} nodes;"
        f" a simulating process's peak RSS {figures.rss_mib:.0f} MiB",
        flush=True,
    )
    for error in figures.errors:
        print(f"  error: {error}", flush=True)
    failed = len(run_ids) - succeeded_runs
    return (
        f"control plane: nodes={args.nodes} runs={len(run_ids)} succeeded={succeeded_runs}"
        f" failed={failed} lost_epochs={lost_epochs} takeovers={takeovers}"
        f" db_connections_peak={peak} write_p99_ms={p99:.1f} sweeps_per_s={sweeps / elapsed:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--postgres", required=True, help="a PostgreSQL server's URL")
    parser.add_argument("--pgbouncer", help="a PgBouncer's URL in front of it, or 'start'")
    parser.add_argument(
        "--pool-size", type=int, default=40, help="server connections of `--pgbouncer start`"
    )
    parser.add_argument("--epoch-seconds", type=float, default=2.0)
    parser.add_argument("--processes", type=int, default=0, help="default: one per core")
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--heartbeat", type=float, default=3.0)
    args = parser.parse_args()
    with scratch_database(args.postgres, "trainyard_bench_control") as database_url:
        name = make_url(database_url).database
        if args.pgbouncer == "start":
            with pgbouncer_server(args.postgres, args.pool_size) as bouncer:
                client = make_url(bouncer).set(database=name).render_as_string(False)
                line = simulate(args, database_url, client)
        elif args.pgbouncer:
            client = make_url(args.pgbouncer).set(database=name).render_as_string(False)
            line = simulate(args, database_url, client)
        else:
            line = simulate(args, database_url, database_url)
    print(line, flush=True)


if __name__ == "__main__":
    main()
