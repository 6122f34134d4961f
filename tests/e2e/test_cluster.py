"""`trainyard cluster --workers 3` on the machine's RabbitMQ and PostgreSQL: jobs spread, none twice."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from cli.client import Client
from shared.config import Settings
from shared.ops.pgadmin import ensure_database, scratch_database
from shared.store.engine import make_engine
from shared.store.models import Epoch, Run, Worker
from tests.support.machine import PG_SERVER, RABBIT_URL, ROOT, mnist_dir
from tests.support.processes import free_port, group_members, http_status, settings_env
from tests.support.waiting import until_finished, wait_for

WORKERS = 3
JOBS = 6


class Cluster:
    """A running `trainyard cluster`, its log, and the database it uses."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path, url: str, engine: Engine):
        self.process, self.log, self.url, self.engine = process, log, url, engine

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"the cluster exited:\n{self.output()[-4000:]}")

    def live_workers(self) -> list[str]:
        self.alive()
        with Session(self.engine) as session:
            return list(session.scalars(select(Worker.name).where(Worker.stopped_at.is_(None))))

    def api_workers(self) -> list[dict[str, Any]] | None:
        """The workers GET /api/workers lists, or None where the API has no such endpoint."""
        try:
            with urllib.request.urlopen(f"{self.url}/api/workers", timeout=5) as response:
                return json.load(response)["workers"]
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 404:
                return None
            raise

    def answering(self) -> bool:
        self.alive()
        return http_status(f"{self.url}/api/runs?limit=1") is not None


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """`trainyard cluster --workers 3` in a process group of its own, on a throwaway database and
    the machine's RabbitMQ. One broker is enough here: test_brokers.py runs a job on each, and the
    compose tier spreads jobs over two workers on Redis."""
    with scratch_database(PG_SERVER, "trainyard_cluster") as database_url:
        settings = Settings(
            home=tmp_path / "home",
            database_url=database_url,
            broker_url=RABBIT_URL,
            data_dir=mnist_dir(),
            allow_download=False,
            secret_key="",
            queue=f"trainyard-cluster-{uuid.uuid4().hex[:8]}",
            heartbeat_interval=1.0,
            tf_threads=1,  # three workers on two cores: no thread oversubscription
        )
        env = settings_env(settings)
        del env["TRAINYARD_SECRET_KEY"]  # the cluster makes one all web processes share
        port = free_port()
        log = tmp_path / "cluster.log"
        command = ["cluster", "--workers", str(WORKERS), "--port", str(port)]
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "cli.main", *command],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group, as a terminal's foreground job is
            )
        engine = make_engine(database_url)
        try:
            yield Cluster(process, log, f"http://127.0.0.1:{port}", engine)
        finally:
            if group_members(process.pid):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            engine.dispose()


def test_three_workers_share_six_jobs_and_one_ctrl_c_stops_all(cluster: Cluster) -> None:
    """Six jobs through the API: all succeed, spread over workers, each trained once; then Ctrl-C."""
    wait_for(cluster.answering, 120, what="the cluster's web server")
    names = wait_for(
        lambda: len(cluster.live_workers()) == WORKERS and cluster.live_workers(),
        180,
        interval=0.5,
        what=f"{WORKERS} workers to register",
    )
    assert sorted(name.split("@")[0] for name in names) == ["worker1", "worker2", "worker3"]
    listed = cluster.api_workers()
    if listed is not None:  # GET /api/workers, where the API has it
        assert {w["name"] for w in listed} == set(names)
        assert {w["concurrency"] for w in listed} == {1}
        assert len({w["pid"] for w in listed}) == WORKERS

    client = Client(cluster.url)
    run_ids = [
        client.submit({"train_samples": 1500, "epochs": 2, "seed": n}, f"cluster {n}")["id"]
        for n in range(JOBS)
    ]

    until_finished(client, *run_ids, timeout=300, interval=1.0, alive=cluster.alive)

    with Session(cluster.engine) as session:
        runs = list(session.scalars(select(Run).where(Run.id.in_(run_ids))))
        epochs = {
            run.id: list(
                session.scalars(
                    select(Epoch.epoch).where(Epoch.run_id == run.id).order_by(Epoch.epoch)
                )
            )
            for run in runs
        }
    output = cluster.output()
    assert len(runs) == JOBS
    for run in runs:
        assert run.status == "succeeded", f"run {run.id}: {run.error}\n{output[-3000:]}"
        assert run.attempt == 1, f"run {run.id} was claimed {run.attempt} times"
        assert run.worker in names
        assert epochs[run.id] == [1, 2], f"run {run.id} epochs {epochs[run.id]}"
    assert len({run.worker for run in runs}) > 1, "all jobs went to one worker"
    # Each job trained exactly once, as the workers' own logs tell it.
    claims = Counter(int(m) for m in re.findall(r"run (\d+) claimed by worker\d@", output))
    assert claims == Counter(run_ids), claims
    assert len(re.findall(r"Task trainyard\.train_run\[[^\]]+\] succeeded", output)) == JOBS

    # One Ctrl-C: the terminal sends SIGINT to the whole foreground group.
    os.killpg(cluster.process.pid, signal.SIGINT)
    assert cluster.process.wait(timeout=90) == 0, cluster.output()[-3000:]
    wait_for(lambda: not group_members(cluster.process.pid), 30, what="every process to exit")
    with Session(cluster.engine) as session:
        still = session.scalars(select(Worker.name).where(Worker.stopped_at.is_(None))).all()
    assert still == [], f"workers that did not sign off: {still}"


def test_cluster_creates_its_missing_postgres_database() -> None:
    """`make cluster` on a fresh machine: the database it names is created once, then reused."""
    server = make_url(PG_SERVER)
    name = f"trainyard_ensure_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    exists = text("SELECT count(*) FROM pg_database WHERE datname = :name")
    try:
        url = server.set(database=name).render_as_string(hide_password=False)
        ensure_database(url)
        ensure_database(url)  # already there: nothing to do, no error
        with admin.connect() as connection:
            assert connection.scalar(exists, {"name": name}) == 1
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
