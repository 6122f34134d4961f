"""The compose cluster as a user runs it: the real Dockerfile and docker-compose.yml, a generated
.env, and the dashboard's published port.

Build, `up --wait`, one job (web and worker through PgBouncer), Flower behind basic auth, the
monitoring profile's Prometheus reading the cluster's series back, two workers sharing four jobs, a Redis
restart with jobs queued, `down` then `up`, an upgrade of trainyard's containers with a job running
(handed over), `up -d --force-recreate` of everything with a job running, and `docker kill` of the
worker holding a job; `down -v` at the end whatever happened. Each step prints what it measured
(`pytest -s` or `-rA` shows it). The tests run in order, on one cluster.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from cli.client import ApiError, Client
from tests.compose.cluster import (
    LONG_JOB,
    SMALL_JOB,
    Cluster,
    Figures,
    brought_up,
    new_cluster,
    setup_problem,
)
from tests.support.waiting import wait_for

FIGURES = Figures("compose")
note = FIGURES.note


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Build the image, write a .env, `up -d --wait` with one worker; `down -v` at the end."""
    problem = setup_problem()
    if problem is not None:
        pytest.skip(problem)
    try:
        with brought_up(new_cluster(tmp_path_factory.mktemp("compose")), note) as cluster:
            yield cluster
    finally:
        FIGURES.summary()


def test_a_job_submitted_through_the_published_port_succeeds(cluster: Cluster) -> None:
    assert cluster.client.request("GET", "/api/health")  # 200 through 127.0.0.1:PORT
    started = time.monotonic()
    run_id = cluster.submit(SMALL_JOB, "first")
    (run,) = cluster.succeeded([run_id], timeout=180)
    assert run["worker"].startswith("worker@") and run["test_accuracy"] > 0.5
    note(
        f"first job (2000 images, 2 epochs): succeeded in {time.monotonic() - started:.1f} s, "
        f"test accuracy {run['test_accuracy']:.3f}"
    )


def test_web_and_workers_reach_postgres_only_through_pgbouncer(cluster: Cluster) -> None:
    """Every connection of the application role comes from the pgbouncer container, and fewer
    server connections than clients (the web's processes and the worker's node and job)."""
    env = cluster.env
    query = (
        "SELECT DISTINCT host(client_addr) FROM pg_stat_activity"
        f" WHERE usename = '{env['TRAINYARD_APP_DB_USER']}'"
    )
    psql = ("psql", "-U", env["POSTGRES_USER"], "-d", env["POSTGRES_DB"], "-Atc", query)
    addresses = set(cluster.compose("exec", "-T", "postgres", *psql).stdout.split())
    (bouncer,) = cluster.containers("pgbouncer")
    inspected = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
         bouncer],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    assert addresses and addresses <= set(inspected.stdout.split()), addresses
    note(f"the application role's server connections all come from pgbouncer ({addresses})")


def test_writes_need_the_token(cluster: Cluster) -> None:
    anonymous = Client(cluster.client.url)
    with pytest.raises(ApiError) as refused:
        anonymous.submit(SMALL_JOB, name="anonymous")
    assert refused.value.status == 401


def test_flower_answers_behind_basic_auth(cluster: Cluster) -> None:
    started = time.monotonic()
    cluster.compose("--profile", "flower", "up", "-d", "--wait", "--wait-timeout", "120", "flower")
    url = f"http://127.0.0.1:{cluster.env['FLOWER_PORT']}"
    credentials = f"{cluster.env['FLOWER_USER']}:{cluster.env['FLOWER_PASSWORD']}"
    signed = {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
    wrong = {"Authorization": "Basic " + base64.b64encode(b"admin:wrong").decode()}

    def status(path: str, headers: dict[str, str] | None = None) -> int:
        request = urllib.request.Request(url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            exc.close()
            return exc.code

    # The health check is open (Flower's own choice, like /api/health); the monitor is not.
    answers = {
        "/healthcheck": status("/healthcheck"),
        "/ without auth": status("/"),
        "/ wrong password": status("/", wrong),
        "/api/workers without auth": status("/api/workers"),
        "/ with auth": status("/", signed),
        "/api/workers with auth": status("/api/workers", signed),
    }
    assert answers == {
        "/healthcheck": 200,
        "/ without auth": 401,
        "/ wrong password": 401,
        "/api/workers without auth": 401,
        "/ with auth": 200,
        "/api/workers with auth": 200,
    }, cluster.logs()
    note(f"flower healthy in {time.monotonic() - started:.1f} s; {answers}")
    cluster.compose("--profile", "flower", "stop", "flower")


def test_prometheus_scrapes_the_cluster_with_its_token(cluster: Cluster) -> None:
    """The monitoring profile: Prometheus scrapes web's /metrics with TRAINYARD_METRICS_TOKEN and
    answers the first job back through its HTTP API; /metrics refuses a scrape without the token.
    (The alerts fire and clear on a real Prometheus in tests/e2e/test_monitoring.py, in seconds
    rather than the rules' minutes.)"""
    started = time.monotonic()
    cluster.compose("--profile", "monitoring", "build", "prometheus", timeout=900)
    cluster.compose(
        "--profile", "monitoring", "up", "-d", "--wait", "--wait-timeout", "120", "prometheus"
    )
    healthy = time.monotonic() - started
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{cluster.client.url}/metrics", timeout=10)
    refused.value.close()
    assert refused.value.code == 401
    prometheus = f"http://127.0.0.1:{cluster.env['PROMETHEUS_PORT']}"
    query = 'trainyard_runs_finished_total{status="succeeded"}'

    def succeeded() -> float | None:
        url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
        with urllib.request.urlopen(url, timeout=10) as response:
            result = json.load(response)["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    seen = wait_for(succeeded, 90, interval=1, what=f"{query} in Prometheus", ignoring=(OSError,))
    assert seen >= 1, cluster.logs()
    note(
        f"prometheus healthy in {healthy:.1f} s; {query} = {seen:g} read back "
        f"{time.monotonic() - started:.1f} s after the start"
    )
    cluster.compose("--profile", "monitoring", "stop", "prometheus")


def test_two_workers_share_four_jobs(cluster: Cluster) -> None:
    cluster.write_env(WORKER_REPLICAS="2")  # the documented way: .env, then `up -d`
    seconds = cluster.timed("up", "-d", "--wait", "--wait-timeout", "300", timeout=360)
    assert len(cluster.containers("worker")) == 2, cluster.logs()

    def two_alive() -> list[str] | None:
        names = [w["name"] for w in cluster.client.request("GET", "/api/workers")["workers"]]
        return names if len(names) == 2 else None

    cluster.wait(two_alive, 60, "two live workers in /api/workers")
    started = time.monotonic()
    run_ids = [
        cluster.submit({**SMALL_JOB, "train_samples": 3000}, f"spread {n}") for n in range(4)
    ]
    runs = cluster.succeeded(run_ids, timeout=300)
    workers = {run["worker"] for run in runs}
    assert len(workers) == 2, f"4 jobs ran on {workers}"
    note(
        f"WORKER_REPLICAS=2 + up -d --wait: {seconds:.1f} s; 4 jobs on 2 workers in "
        f"{time.monotonic() - started:.1f} s, {sorted(run['worker'] for run in runs)}"
    )


def test_a_redis_restart_loses_no_queued_job(cluster: Cluster) -> None:
    run_ids = [cluster.submit(SMALL_JOB, f"through a redis restart {n}") for n in range(4)]
    queued = sum(cluster.client.run(run_id)["status"] == "queued" for run_id in run_ids)
    started = time.monotonic()
    restart = cluster.timed("restart", "redis", timeout=120)
    runs = cluster.succeeded(run_ids, timeout=300)
    note(
        f"redis restarted ({restart:.1f} s) with {queued} of 4 jobs queued: "
        f"{sum(run['status'] == 'succeeded' for run in runs)}/4 succeeded, "
        f"{time.monotonic() - started:.1f} s after the restart began"
    )


def test_redis_losing_its_data_loses_no_queued_job(cluster: Cluster) -> None:
    # Redis restarted without its data (a flush, AOF off, a lost volume): the queued runs'
    # messages are gone. Both workers are busy, so three runs are surely queued when it happens;
    # the workers' sweeps must send them again, since nothing else will.
    busy = [cluster.submit(LONG_JOB, f"keeps worker {n} busy") for n in range(2)]
    for run_id in busy:
        cluster.running(run_id, epochs=1, timeout=180)
    waiting = [cluster.submit(SMALL_JOB, f"queued through a redis flush {n}") for n in range(3)]
    assert all(cluster.client.run(run_id)["status"] == "queued" for run_id in waiting)
    password = cluster.env["REDIS_PASSWORD"]
    flush = ("exec", "-T", "redis", "redis-cli", "-a", password, "--no-auth-warning")
    assert cluster.compose(*flush, "FLUSHALL").stdout.strip() == "OK"
    cluster.compose("restart", "redis", timeout=120)
    lost = time.monotonic()
    assert cluster.compose(*flush, "LLEN", "training").stdout.strip() == "0", "Redis kept data"
    for run_id in busy:
        cluster.client.cancel(run_id)
    runs = cluster.succeeded(waiting, timeout=180)
    assert [run["attempt"] for run in runs] == [1, 1, 1], f"a run was claimed twice: {runs}"
    note(
        f"Redis flushed and restarted with 3 runs queued behind 2 busy workers: 3/3 succeeded, "
        f"all done {time.monotonic() - lost:.1f} s after"
    )


def test_down_then_up_keeps_every_run(cluster: Cluster) -> None:
    before = {run["id"]: run["status"] for run in cluster.client.iter_runs()}
    down = cluster.timed("down", "--timeout", "30", timeout=180)
    up = cluster.timed("up", "-d", "--wait", "--wait-timeout", "300", timeout=360)
    after = {run["id"]: run["status"] for run in cluster.client.iter_runs()}
    assert after == before, f"before down: {before}\nafter up: {after}"
    assert len(cluster.containers("worker")) == 2
    note(f"down ({down:.1f} s) then up --wait ({up:.1f} s): all {len(after)} runs kept")


def test_an_upgrade_hands_the_running_job_over_and_keeps_the_workers(cluster: Cluster) -> None:
    # What `up -d --build` does after `git pull`: trainyard's containers are recreated (migrate
    # runs again first) while PostgreSQL and Redis stay up.
    run_id = cluster.submit(LONG_JOB, "through an upgrade")
    holder = cluster.running(run_id, epochs=2, timeout=180)
    seconds = cluster.timed(
        "up", "-d", "--force-recreate", "--wait", "--wait-timeout", "300", "web", "worker",
        timeout=420,
    )  # fmt: skip
    workers = cluster.containers("worker")
    assert len(workers) == int(cluster.env["WORKER_REPLICAS"]) == 2, cluster.logs()
    started = time.monotonic()
    (run,) = cluster.succeeded([run_id], timeout=300)
    attempts = sorted({epoch["attempt"] for epoch in epochs_of(cluster, run_id)})
    assert run["attempt"] == 2 and attempts == [1, 2], f"not resumed by a second attempt: {run}"
    assert run["lost_attempts"] == [], f"not handed over, lost: {run['lost_attempts']}"
    assert run["epochs_done"] == LONG_JOB["epochs"]
    note(
        f"up -d --force-recreate --wait web worker with a job at epoch {holder['epochs_done']}: "
        f"{seconds:.1f} s, {len(workers)} workers after; handed over, resumed on {run['worker']} "
        f"(epochs recorded by attempts {attempts}), finished {time.monotonic() - started:.1f} s "
        "after the recreate"
    )


def test_recreating_everything_keeps_the_workers_and_finishes_the_job(cluster: Cluster) -> None:
    # `up -d --force-recreate` recreates PostgreSQL and Redis too, and compose stops them before
    # the workers: the hand-over cannot be written, so the run's lease runs out (30 s) and the
    # run resumes from its last checkpoint.
    run_id = cluster.submit(LONG_JOB, "through a full recreate")
    holder = cluster.running(run_id, epochs=2, timeout=180)
    seconds = cluster.timed(
        "up", "-d", "--force-recreate", "--wait", "--wait-timeout", "300", timeout=420
    )
    workers = cluster.containers("worker")
    assert len(workers) == int(cluster.env["WORKER_REPLICAS"]) == 2, cluster.logs()
    started = time.monotonic()
    (run,) = cluster.succeeded([run_id], timeout=300)
    attempts = sorted({epoch["attempt"] for epoch in epochs_of(cluster, run_id)})
    assert run["attempt"] >= 2 and len(attempts) >= 2, f"not resumed: {run}"
    assert run["epochs_done"] == LONG_JOB["epochs"]
    how = "; ".join(lost["reason"] for lost in run["lost_attempts"]) or "handed over"
    note(
        f"up -d --force-recreate --wait with a job at epoch {holder['epochs_done']}: "
        f"{seconds:.1f} s, {len(workers)} workers after; the job resumed (attempts {attempts}, "
        f"{how}) and finished {time.monotonic() - started:.1f} s after the recreate"
    )


def test_a_killed_worker_s_job_finishes_on_the_other(cluster: Cluster) -> None:
    run_id = cluster.submit(LONG_JOB, "through a docker kill")
    holder = cluster.running(run_id, epochs=2, timeout=180)
    hostname = holder["worker"].split("@", 1)[1]
    (victim,) = [c for c in cluster.containers("worker") if c.startswith(hostname)]
    subprocess.run(["docker", "kill", victim], capture_output=True, timeout=60, check=True)
    killed_at = time.monotonic()
    (run,) = cluster.succeeded([run_id], timeout=300)
    finished_after = time.monotonic() - killed_at
    assert run["lost_attempts"], f"the kill went unnoticed: {run}"
    state = subprocess.run(
        ["docker", "inspect", "--format", "{{.State.Status}} {{.RestartCount}}", victim],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    if state == ["exited", "0"]:  # Docker does not restart a container `docker kill` stopped
        assert run["worker"] != holder["worker"], f"finished on the killed worker: {run}"
    # `up -d` brings the worker count back to WORKER_REPLICAS.
    seconds = cluster.timed("up", "-d", "--wait", "--wait-timeout", "300", timeout=360)
    assert len(cluster.containers("worker")) == 2, cluster.logs()
    note(
        f"docker kill of {holder['worker']} at epoch {holder['epochs_done']}: the job finished on "
        f"{run['worker']} {finished_after:.1f} s later (attempt {run['attempt']}, "
        f"{run['lost_attempts'][0]['reason']}); killed container {' '.join(state[:1])} "
        f"(restarts {state[1]}); up -d --wait back to 2 workers in {seconds:.1f} s"
    )


def epochs_of(cluster: Cluster, run_id: int) -> list[dict[str, Any]]:
    return cluster.client.request("GET", f"/api/runs/{run_id}/metrics")["epochs"]
