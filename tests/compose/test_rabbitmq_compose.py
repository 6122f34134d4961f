"""The compose cluster on RabbitMQ: docker-compose.yml with docker-compose.rabbitmq.yml over it, as
the README's Brokers section runs it.

Without a registry here, the official rabbitmq image is stood in for by Debian's rabbitmq-server
(tests/compose/rabbitmq/), unless the official image is already on the machine. A job runs with
no Redis started, on a durable quorum queue; the broker SIGKILLed with runs queued loses none, and
none had to be sent again by the workers' sweeps (the queue itself kept them).
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compose.cluster import (
    LONG_JOB,
    SMALL_JOB,
    Cluster,
    Figures,
    brought_up,
    new_cluster,
    setup_problem,
)
from tests.support.machine import ROOT

OFFICIAL = "rabbitmq:3.13"  # docker-compose.rabbitmq.yml's default image
STAND_IN = "trainyard-test/rabbitmq:standin"
STAND_IN_CONTEXT = Path(__file__).resolve().parent / "rabbitmq"
FIGURES = Figures("compose on rabbitmq")
note = FIGURES.note


def rabbitmq_image() -> str:
    """The official image when the machine has it, else the stand-in, built now."""
    present = subprocess.run(
        ["docker", "image", "inspect", OFFICIAL], capture_output=True, timeout=60, check=False
    )
    if present.returncode == 0:
        return OFFICIAL
    started = time.monotonic()
    subprocess.run(
        ["docker", "build", "-q", "-t", STAND_IN, str(STAND_IN_CONTEXT)],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    note(f"stand-in for {OFFICIAL} built in {time.monotonic() - started:.1f} s")
    return STAND_IN


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The cluster on RabbitMQ with one worker; `down -v` at the end."""
    problem = setup_problem()
    if problem is not None:
        pytest.skip(problem)
    try:
        project = new_cluster(
            tmp_path_factory.mktemp("compose-rabbitmq"),
            (ROOT / "docker-compose.rabbitmq.yml",),
            RABBITMQ_PASSWORD=secrets.token_hex(16),
            RABBITMQ_IMAGE=rabbitmq_image(),
        )
        with brought_up(project, note) as cluster:
            yield cluster
    finally:
        FIGURES.summary()


def queues(cluster: Cluster) -> dict[str, tuple[str, str, int]]:
    """The broker's queues: name -> (type, durable, messages), as rabbitmqctl lists them."""
    listed = cluster.compose(
        "exec", "-T", "rabbitmq", "rabbitmqctl", "-q", "list_queues",
        "--no-table-headers", "name", "type", "durable", "messages",
    ).stdout  # fmt: skip
    rows = [line.split() for line in listed.splitlines() if line.strip()]
    return {name: (kind, durable, int(messages)) for name, kind, durable, messages in rows}


def test_a_job_runs_on_a_durable_quorum_queue_with_no_redis(cluster: Cluster) -> None:
    services = cluster.compose("ps", "-a", "--format", "{{.Service}}").stdout.split()
    assert "rabbitmq" in services and "redis" not in services, services
    health = cluster.client.request("GET", "/api/health")
    assert health["ok"] is True
    started = time.monotonic()
    run_id = cluster.submit(SMALL_JOB, "on rabbitmq")
    (run,) = cluster.succeeded([run_id], timeout=180)
    assert run["worker"].startswith("worker@") and run["test_accuracy"] > 0.5
    kind, durable, _ = queues(cluster)["training"]
    assert (kind, durable) == ("quorum", "true")
    note(
        f"first job on RabbitMQ succeeded in {time.monotonic() - started:.1f} s, test accuracy "
        f"{run['test_accuracy']:.3f}; queue `training`: {kind}, durable"
    )


def test_a_broker_killed_with_runs_queued_loses_none(cluster: Cluster) -> None:
    # The only worker is busy, so three runs are surely queued, their messages confirmed by the
    # quorum queue, when the broker dies without a chance to save anything (SIGKILL).
    busy = cluster.submit(LONG_JOB, "keeps the worker busy")
    cluster.running(busy, epochs=1, timeout=180)
    waiting = [cluster.submit(SMALL_JOB, f"queued through a broker kill {n}") for n in range(3)]
    assert all(cluster.client.run(run_id)["status"] == "queued" for run_id in waiting)
    # The broker's counts lag by its statistics interval (5 s).
    cluster.wait(lambda: queues(cluster)["training"][2] >= 3, 30, "3 messages in the queue")
    cluster.compose("kill", "-s", "SIGKILL", "rabbitmq", timeout=60)
    killed = time.monotonic()
    back = cluster.timed("up", "-d", "--wait", "--wait-timeout", "180", "rabbitmq", timeout=240)
    cluster.client.cancel(busy)
    runs = cluster.succeeded(waiting, timeout=300)
    assert [run["attempt"] for run in runs] == [1, 1, 1], f"a run was claimed twice: {runs}"
    # The quorum queue kept them: the workers' sweeps never had to send a lost message again.
    worker_log = cluster.compose("logs", "--no-color", "worker").stdout
    assert "the broker lost the messages" not in worker_log
    note(
        f"RabbitMQ SIGKILLed with 3 runs queued behind a busy worker, back healthy in {back:.1f} s: "
        f"3/3 succeeded, all done {time.monotonic() - killed:.1f} s after the kill"
    )
