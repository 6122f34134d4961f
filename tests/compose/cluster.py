"""The compose cluster as the tests drive it: a project of the repository's compose files with its
own name and .env, and the waits and checks a user makes through the published port."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.client import ApiError, Client
from shared.domain.status import FINISHED_STATUSES
from tests.support.machine import ROOT, mnist_dir
from tests.support.processes import free_port
from tests.support.waiting import until_finished, wait_for

SMALL_JOB = {"train_samples": 2000, "epochs": 2}
# Long enough to still be training through an upgrade or a kill: ~0.6 s an epoch on one CPU.
LONG_JOB = {"train_samples": 60000, "epochs": 40}
IMAGE = "trainyard:compose-test"  # one tag for every run, so the layer cache carries over


def docker_engine_problem() -> str | None:
    """Why `docker compose` cannot run containers here, or None when it can."""
    if shutil.which("docker") is None:
        return "no `docker` command (../shared/docker/setup.sh . installs Docker)"
    for command in (
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        ["docker", "compose", "version"],
    ):
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"`{' '.join(command)}` failed: {exc}"
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-1:]
            return f"`{' '.join(command[:2])}` failed: {' '.join(detail)} (is dockerd running?)"
    return None


def setup_problem() -> str | None:
    """Why the cluster cannot run here (no Docker engine, no MNIST), or None."""
    problem = docker_engine_problem()
    if problem is None and not any(mnist_dir().glob("train-labels-idx1-ubyte*")):
        problem = f"no MNIST in {mnist_dir()} (set TRAINYARD_DATA_DIR)"
    return problem


@dataclass
class Cluster:
    """One compose project of the repository's files, with its own name and .env."""

    project: str
    env_file: Path
    env: dict[str, str]
    client: Client = field(init=False)
    files: tuple[Path, ...] = (ROOT / "docker-compose.yml",)

    def __post_init__(self) -> None:
        self.client = Client(
            f"http://127.0.0.1:{self.env['TRAINYARD_PORT']}", self.env["TRAINYARD_API_TOKEN"]
        )

    def write_env(self, **changes: str) -> None:
        """Write the .env (after `changes`), as a user edits theirs."""
        self.env.update(changes)
        self.env_file.write_text("".join(f"{key}={value}\n" for key, value in self.env.items()))

    def run(self, args: tuple[str, ...], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run `docker compose ARGS` on this project; the caller's shell variables stay out of it
        (compose would prefer them to the .env)."""
        command = [
            "docker", "compose", "-p", self.project, "--project-directory", str(ROOT),
            *(arg for path in self.files for arg in ("-f", str(path))),
            "--env-file", str(self.env_file), *args,
        ]  # fmt: skip
        keep = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT")
        env = {key: os.environ[key] for key in keep if key in os.environ}
        return subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run `docker compose ARGS`; fail with the containers' logs unless it succeeds."""
        try:
            result = self.run(args, timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"`docker compose {' '.join(args)}` ran over {timeout:.0f} s\n{self.logs()}"
            ) from exc
        if result.returncode != 0:
            raise AssertionError(
                f"`docker compose {' '.join(args)}` exited {result.returncode}:\n"
                f"{result.stderr[-3000:]}\n{self.logs()}"
            )
        return result

    def timed(self, *args: str, timeout: float = 300) -> float:
        """Run `docker compose ARGS` and return the seconds it took."""
        started = time.monotonic()
        self.compose(*args, timeout=timeout)
        return time.monotonic() - started

    def logs(self, tail: int = 60) -> str:
        """Every container's state and the last lines of its log, for a failure message."""
        try:
            states = self.run(("ps", "-a", "--format", "{{.Name}} {{.Status}}"), 60).stdout
            profiles = ("--profile", "flower", "--profile", "monitoring")
            logs = self.run((*profiles, "logs", "--no-color", "--tail", str(tail)), 60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"(no logs: {exc})"
        return (
            f"--- docker compose ps -a ---\n{states.strip()}\n"
            f"--- docker compose logs --tail {tail} ---\n{logs.stdout[-12000:]}"
        )

    def containers(self, service: str) -> list[str]:
        """Ids of the service's running containers."""
        return self.compose("ps", "-q", service).stdout.split()

    def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll `check` every second until it returns something truthy (an API error, the web app
        restarting say, counts as not yet); fail with the containers' logs."""
        try:
            return wait_for(check, timeout, interval=1, what=what, ignoring=(ApiError,))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def submit(self, params: dict[str, Any], name: str) -> int:
        return self.client.submit(params, name=name)["id"]

    def finished(self, run_ids: list[int], timeout: float) -> list[dict[str, Any]]:
        """Wait until every run has finished; return them."""
        try:
            return until_finished(
                self.client, *run_ids, timeout=timeout, interval=1, ignoring=(ApiError,)
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def succeeded(self, run_ids: list[int], timeout: float) -> list[dict[str, Any]]:
        runs = self.finished(run_ids, timeout)
        failed = [
            (run["id"], run["status"], run["error"]) for run in runs if run["status"] != "succeeded"
        ]
        assert not failed, f"runs that did not succeed: {failed}\n{self.logs()}"
        return runs

    def running(self, run_id: int, epochs: int, timeout: float) -> dict[str, Any]:
        """Wait until the run is running with at least `epochs` epochs done; return it."""

        def far_enough() -> dict[str, Any] | None:
            run = self.client.run(run_id)
            assert run["status"] not in FINISHED_STATUSES, f"run {run_id} ended early: {run}"
            return run if run["status"] == "running" and run["epochs_done"] >= epochs else None

        return self.wait(far_enough, timeout, f"run {run_id} to train {epochs} epoch(s)")


def generated_env(port: int, flower_port: int) -> dict[str, str]:
    """A .env as a careful user writes it: random secrets, a token, ports on this machine only."""
    return {
        "POSTGRES_USER": "trainyard",
        "POSTGRES_DB": "trainyard",
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "TRAINYARD_APP_DB_USER": "trainyard_app",
        "TRAINYARD_APP_DB_PASSWORD": secrets.token_hex(16),
        "REDIS_PASSWORD": secrets.token_hex(16),
        "TRAINYARD_SECRET_KEY": secrets.token_hex(24),
        "TRAINYARD_API_TOKEN": secrets.token_hex(16),
        "TRAINYARD_PORT": str(port),
        "MNIST_DIR": str(mnist_dir()),
        "WORKER_REPLICAS": "1",
        "WORKER_CPUS": "1",
        "FLOWER_PORT": str(flower_port),
        "FLOWER_USER": "admin",
        "FLOWER_PASSWORD": secrets.token_hex(16),
        "TRAINYARD_IMAGE": IMAGE,
        "PROMETHEUS_PORT": str(free_port()),
        "TRAINYARD_METRICS_TOKEN": secrets.token_hex(16),
    }


@dataclass
class Figures:
    """What a cluster test measured: each line printed as it comes, and again at the end."""

    prefix: str
    lines: list[str] = field(default_factory=list)

    def note(self, line: str) -> None:
        print(f"{self.prefix}: {line}", flush=True)
        self.lines.append(line)

    def summary(self) -> None:
        print(f"\n{self.prefix} figures:\n  " + "\n  ".join(self.lines), flush=True)


def new_cluster(folder: Path, files: tuple[Path, ...] = (), **env: str) -> Cluster:
    """A compose project of docker-compose.yml (and `files` over it) with a unique name and a
    generated .env (plus `env`), written to `folder`."""
    port = free_port()
    flower_port = free_port()
    while flower_port == port:
        flower_port = free_port()
    cluster = Cluster(
        project=f"trainyard-test-{uuid.uuid4().hex[:8]}",
        env_file=folder / ".env",
        env={**generated_env(port, flower_port), **env},
        files=(ROOT / "docker-compose.yml", *files),
    )
    cluster.write_env()
    return cluster


@contextmanager
def brought_up(cluster: Cluster, note: Callable[[str], None]) -> Iterator[Cluster]:
    """Build the image, `up -d --wait`, yield; `down -v` at the end, whatever happened."""
    try:
        seconds = cluster.timed("build", timeout=1200)
        size = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Size}}", IMAGE],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        note(f"docker compose build: {seconds:.1f} s; image {int(size) / 1e6:.0f} MB")
        seconds = cluster.timed("up", "-d", "--wait", "--wait-timeout", "300", timeout=360)
        note(f"up -d --wait (1 worker), to healthy: {seconds:.1f} s")
        yield cluster
    finally:
        seconds = cluster.timed(
            "--profile", "flower", "--profile", "monitoring",
            "down", "-v", "--remove-orphans", "--timeout", "10", timeout=180,
        )  # fmt: skip
        note(f"down -v: {seconds:.1f} s")
