"""docker-compose.yml and the Dockerfile: the shape users rely on, and the commands `trainyard cluster` runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.cluster import MIGRATE_ARGS, cluster_commands, web_args, worker_args
from tests.support import ROOT

COMPOSE = ROOT / "docker-compose.yml"
# A reference, `${NAME}`, `${NAME:?message}` or `${NAME:-}`: never a literal value.
REFERENCE = r"\$\{[A-Z][A-Z0-9_]*(?::\?[^}]*|:-)?\}"
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|AUTH", re.IGNORECASE)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def readme_services() -> set[str]:
    """The services the README's Cluster section lists in its table (first column, in backticks)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Cluster\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z]+)` \|", section, re.MULTILINE))


def strings(node: Any) -> list[str]:
    """Every string in a parsed YAML tree, keys and values."""
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (*strings(key), *strings(value))]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [node] if isinstance(node, str) else []


def test_every_service_the_readme_names_exists(services: dict[str, Any]) -> None:
    named = readme_services()
    assert {"redis", "postgres", "migrate", "web", "worker", "flower"} <= named
    assert named == set(services), "README's Cluster table and docker-compose.yml disagree"


def test_web_and_worker_share_one_image(services: dict[str, Any]) -> None:
    web, worker = services["web"], services["worker"]
    assert web["image"] == worker["image"] == services["migrate"]["image"]
    assert web["build"] == worker["build"] == {"context": "."}


def test_commands_are_the_process_topologys(services: dict[str, Any]) -> None:
    assert services["web"]["command"] == ["trainyard", *web_args("0.0.0.0", 8000)]
    assert services["worker"]["command"] == ["trainyard", *worker_args("worker@%h")]
    assert services["migrate"]["command"] == ["trainyard", *MIGRATE_ARGS]
    # `trainyard cluster` runs the same arguments, with its own address and one name per worker.
    processes = cluster_commands(3, "0.0.0.0", 8000)
    assert processes["web"][3:] == services["web"]["command"][1:]
    workers = [command for name, command in processes.items() if name.startswith("worker")]
    assert len(workers) == 3
    names = {command[-1] for command in workers}
    assert names == {"worker1@%h", "worker2@%h", "worker3@%h"}
    for command in workers:
        assert command[3:-1] == services["worker"]["command"][1:-1]
    assert (
        "--concurrency" in worker_args()
        and worker_args()[worker_args().index("--concurrency") + 1] == "1"
    )


def test_no_secret_is_hard_coded(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_KEY.search(key):
                assert re.fullmatch(REFERENCE, str(value)), f"{name}: {key} is not from .env"
        command = service.get("command") or []
        for flag in ("--requirepass", "--password", "--basic-auth"):
            if flag in command:
                assert re.fullmatch(REFERENCE, command[command.index(flag) + 1]), name
    for text in strings(services):
        for password in re.findall(r"://[^/@\s]*?:([^@/\s]*)@", text):
            assert re.fullmatch(REFERENCE, password), f"a URL carries a literal password: {text}"


def test_env_example_ships_no_secret_and_env_stays_out() -> None:
    example = (ROOT / ".env.example").read_text()
    values = dict(
        line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#")
    )
    for key in ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "TRAINYARD_SECRET_KEY"):
        assert values[key] == "", f".env.example must leave {key} empty"
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert ".env" in (ROOT / ".dockerignore").read_text().split()
    # Every variable docker-compose.yml reads is documented in .env.example.
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text())) - {"TRAINYARD_IMAGE"}
    assert used <= set(values), f"undocumented in .env.example: {used - set(values)}"


def test_redis_and_postgres_publish_no_port(services: dict[str, Any]) -> None:
    for name in ("redis", "postgres"):
        assert "ports" not in services[name], name
        assert services[name].get("network_mode") != "host", name
        assert services[name]["volumes"], f"{name} keeps its data on a volume"
    assert services["redis"]["command"][:3] == ["redis-server", "--appendonly", "yes"]
    assert len(services["web"]["ports"]) == 1
    assert "ports" not in services["worker"], "`--scale worker=N` needs workers without ports"


def test_web_and_worker_start_after_migrations(services: dict[str, Any]) -> None:
    for name in ("web", "worker"):
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"


def test_worker_gets_mnist_cpus_and_flower_is_optional(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert worker["environment"]["TRAINYARD_DATA_DIR"] == "/data/mnist"
    assert any(v.endswith(":/data/mnist:ro") for v in worker["volumes"])
    assert "cpus" in worker
    assert services["web"]["healthcheck"]["test"][-1].count("/api/health") == 1
    assert services["flower"]["profiles"] == ["flower"]


def test_dockerfile_is_multi_stage_non_root_with_a_health_check() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    assert len(stages) >= 2, "build tools belong in a builder stage"
    final = stages[-1]
    assert "python:3.11-slim" in text
    assert "build-essential" not in final and "apt-get install" not in final
    users = re.findall(r"^USER\s+(\S+)", final, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK ", final, re.MULTILINE)
    # Dependencies are installed before the code is copied, so code edits reuse that layer.
    assert text.index("pip install --requirement") < text.index("COPY . .")


def docker_compose_works() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return (
            subprocess.run(
                ["docker", "compose", "version"], capture_output=True, timeout=30
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not docker_compose_works(), reason="no working `docker compose` here")
def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "POSTGRES_PASSWORD": "test-only",
        "REDIS_PASSWORD": "test-only",
        "TRAINYARD_SECRET_KEY": "test-only",
    }
    empty = tmp_path / "empty.env"  # the test's variables, not a developer's .env
    empty.write_text("")
    command = ["docker", "compose", "-f", str(COMPOSE), "--env-file", str(empty)]
    result = subprocess.run(
        [*command, "--profile", "flower", "config", "-q"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
