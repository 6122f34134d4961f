"""docker-compose.yml, the Dockerfile and requirements.lock: the shape users rely on, the hardening,
and the commands `trainyard cluster` runs. Static checks; tests/compose/ runs the real thing."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cli import dbadmin
from cli.cluster import MIGRATE_ARGS, cluster_commands, web_args, worker_args
from cli.main import main
from tests.support.machine import ROOT

COMPOSE = ROOT / "docker-compose.yml"
# A reference, `${NAME}`, `${NAME:?message}`, `${NAME:-}` or `${NAME:-default}`: never a literal.
REFERENCE = r"\$\{[A-Z][A-Z0-9_]*(?::\?[^}]*|:-[^}]*)?\}"
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|AUTH", re.IGNORECASE)
# The containers that run trainyard's own code (the image built from this folder).
TRAINYARD_SERVICES = ("migrate", "web", "worker", "flower")
APP_ROLE = "${TRAINYARD_APP_DB_USER:-trainyard_app}"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def documented_services() -> set[str]:
    """The services docs/deploying.md's compose section lists in its table (first column)."""
    text = (ROOT / "docs" / "deploying.md").read_text()
    section = text.split("\n## The compose cluster\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z]+)` \|", section, re.MULTILINE))


def strings(node: Any) -> list[str]:
    """Every string in a parsed YAML tree, keys and values."""
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (*strings(key), *strings(value))]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [node] if isinstance(node, str) else []


def migrate_steps(services: dict[str, Any]) -> list[list[str]]:
    """The commands of the migrate service's `sh -c` script, in order, as argument lists."""
    command = services["migrate"]["command"]
    assert command[:2] == ["sh", "-c"] and len(command) == 3, command
    steps = [shlex.split(step) for step in command[2].split("&&")]
    return [step[1:] if step[0] == "exec" else step for step in steps]


def database_url_user(url: str) -> str:
    """The user part of a compose database URL, its references left as written."""
    match = re.fullmatch(
        r"postgresql\+psycopg://(.+?):(\$\{[^}]*\})@(?:postgres:5432|pgbouncer:6432)/(.+)", url
    )
    assert match, f"not a PostgreSQL URL with its password from .env: {url}"
    return match.group(1)


def test_every_service_the_docs_name_exists(services: dict[str, Any]) -> None:
    named = documented_services()
    assert {"redis", "postgres", "migrate", "web", "worker", "flower"} <= named
    assert named == set(services), "deploying.md's service table and docker-compose disagree"


def test_web_and_worker_share_one_image(services: dict[str, Any]) -> None:
    images = {services[name]["image"] for name in TRAINYARD_SERVICES}
    assert len(images) == 1
    builds = [services[name]["build"] for name in TRAINYARD_SERVICES]
    assert builds == [{"context": "."}] * len(TRAINYARD_SERVICES)


def test_commands_are_the_process_topologys(services: dict[str, Any]) -> None:
    assert services["web"]["command"] == ["trainyard", *web_args("0.0.0.0", 8000)]
    assert services["worker"]["command"] == ["trainyard", *worker_args("worker@%h")]
    # migrate runs `trainyard cluster`'s migration step, between waiting and granting the role.
    assert migrate_steps(services)[1] == ["trainyard", *MIGRATE_ARGS]
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


def test_migrate_waits_upgrades_then_grants_the_app_role(services: dict[str, Any]) -> None:
    wait, upgrade, grant = migrate_steps(services)
    assert wait[:3] == ["trainyard", "db", "wait"] and upgrade == ["trainyard", "db", "upgrade"]
    assert grant[:3] == ["trainyard", "db", "grant-app-role"]
    # The options parse as the commands define them (a typo would only show at `docker compose up`).
    wait_context = dbadmin.db_wait.make_context("wait", wait[3:])
    assert wait_context.params["timeout"] >= 60
    grant_context = dbadmin.db_grant_app_role.make_context("grant-app-role", grant[3:])
    assert grant_context.params["role"] == APP_ROLE
    password_env = grant_context.params["password_env"]
    assert services["migrate"]["environment"][password_env] == (
        "${TRAINYARD_APP_DB_PASSWORD:?set TRAINYARD_APP_DB_PASSWORD in .env (see .env.example)}"
    )


def test_db_admin_commands_are_registered() -> None:
    db = main.commands["db"]
    assert isinstance(db, click.Group)
    assert db.commands.get("wait") is dbadmin.db_wait, "cli/main.py: dbadmin.register(db)"
    assert db.commands.get("grant-app-role") is dbadmin.db_grant_app_role


def test_web_and_worker_connect_as_the_app_role_and_migrate_as_the_owner(
    services: dict[str, Any],
) -> None:
    for name in ("web", "worker"):
        url = services[name]["environment"]["TRAINYARD_DATABASE_URL"]
        assert database_url_user(url) == APP_ROLE, name
    migrate_url = services["migrate"]["environment"]["TRAINYARD_DATABASE_URL"]
    assert database_url_user(migrate_url) == "${POSTGRES_USER:-trainyard}"
    assert "TRAINYARD_DATABASE_URL" not in services["flower"]["environment"], "flower: broker only"


def test_web_and_worker_go_through_pgbouncer_and_migrate_does_not(
    services: dict[str, Any],
) -> None:
    for name in ("web", "worker"):
        environment = services[name]["environment"]
        assert "@pgbouncer:6432/" in environment["TRAINYARD_DATABASE_URL"], name
        assert environment["TRAINYARD_DATABASE_POOLER"] == "transaction", name
        assert services[name]["depends_on"]["pgbouncer"]["condition"] == "service_healthy"
    assert "@postgres:5432/" in services["migrate"]["environment"]["TRAINYARD_DATABASE_URL"]
    bouncer = services["pgbouncer"]
    assert bouncer["environment"]["PGBOUNCER_USER"] == "${TRAINYARD_APP_DB_USER:-trainyard_app}"
    assert "ports" not in bouncer


def test_no_secret_is_hard_coded(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_KEY.search(key):
                assert re.fullmatch(f"{REFERENCE}(?::{REFERENCE})*", str(value)), (
                    f"{name}: {key} is not from .env"
                )
        command = service.get("command") or []
        for flag in ("--requirepass", "--password", "--basic-auth"):
            if flag in command:
                assert re.fullmatch(REFERENCE, command[command.index(flag) + 1]), name
        assert not any(arg.startswith("--basic-auth=") for arg in command), name
    for text in strings(services):
        plain = re.sub(REFERENCE, "REF", text)
        for password in re.findall(r"://[^/@\s]*:([^@/\s]*)@", plain):
            assert password == "REF", f"a URL carries a literal password: {text}"


def test_env_example_ships_no_secret_and_env_stays_out() -> None:
    example = (ROOT / ".env.example").read_text()
    values = dict(
        line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#")
    )
    for key in (
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "TRAINYARD_SECRET_KEY",
        "TRAINYARD_APP_DB_PASSWORD",
        "FLOWER_PASSWORD",
    ):
        assert values[key] == "", f".env.example must leave {key} empty"
    assert values["WORKER_REPLICAS"] == "2" and values["WORKER_CPUS"] == "1"
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
    assert "ports" not in services["worker"], "several workers need workers without ports"


def test_published_ports_are_on_loopback_only(services: dict[str, Any]) -> None:
    assert services["web"]["ports"] == ["127.0.0.1:${TRAINYARD_PORT:-8000}:8000"]
    for name, service in services.items():
        assert service.get("network_mode") != "host", name
        for port in service.get("ports") or []:
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: {port}"


def test_trainyard_containers_run_without_privileges(services: dict[str, Any]) -> None:
    for name in TRAINYARD_SERVICES:
        service = services[name]
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert "cap_add" not in service and not service.get("privileged"), name


def test_flower_needs_basic_auth(services: dict[str, Any]) -> None:
    auth = services["flower"]["environment"]["FLOWER_BASIC_AUTH"]
    assert re.fullmatch(r"\$\{FLOWER_USER:\?[^}]+\}:\$\{FLOWER_PASSWORD:\?[^}]+\}", auth), auth
    assert "FLOWER_UNAUTHENTICATED_API" not in services["flower"]["environment"]


def test_web_and_worker_start_after_migrations(services: dict[str, Any]) -> None:
    for name in ("web", "worker"):
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"


def test_worker_count_survives_upgrades(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert worker["deploy"]["replicas"] == "${WORKER_REPLICAS:-2}"
    assert "scale" not in worker, "one source for the count: deploy.replicas"
    assert worker["cpus"] == "${WORKER_CPUS:-1}"
    grace = re.fullmatch(r"(\d+)s", worker["stop_grace_period"])
    assert grace and int(grace.group(1)) <= 60, "SIGTERM hands a run over within seconds"


def test_worker_gets_mnist_cpus_and_flower_is_optional(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert worker["environment"]["TRAINYARD_DATA_DIR"] == "/data/mnist"
    assert any(v.endswith(":/data/mnist:ro") for v in worker["volumes"])
    assert services["flower"]["profiles"] == ["flower"]


def test_health_checks_fit_each_service(services: dict[str, Any]) -> None:
    def check(name: str) -> str:
        return " ".join(services[name]["healthcheck"]["test"])

    assert "redis-cli ping" in check("redis") and "PONG" in check("redis")
    postgres = check("postgres")
    assert "pg_isready -h 127.0.0.1" in postgres and "-U" in postgres and "-d" in postgres
    assert check("web").count("/api/health") == 1
    assert "inspect ping" in check("worker") and "$$HOSTNAME" in check("worker")
    assert "/healthcheck" in check("flower")
    assert services["migrate"]["healthcheck"] == {"disable": True}


def test_dockerfile_builds_anywhere_multi_stage_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"^#\s*syntax=", text, re.MULTILINE), "pulls a frontend from a registry"
    assert "<<" not in text, "heredocs need BuildKit"
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    assert len(stages) >= 2, "the virtualenv is built in a builder stage"
    final = stages[-1]
    assert "python:3.11-slim" in text
    assert "build-essential" not in text and "apt-get install" not in text
    users = re.findall(r"^USER\s+(\S+)", final, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    # Health checks and ports differ per service: they belong in docker-compose.yml.
    assert not re.search(r"^(HEALTHCHECK|EXPOSE) ", text, re.MULTILINE)
    # The lock alone is copied before installing, so code edits reuse the dependency layer.
    install = re.search(
        r"^RUN pip install --require-hashes --no-deps .*requirements\.lock", text, re.M
    )
    assert install, "the image installs exactly requirements.lock"
    assert text.index("COPY requirements.lock") < install.start() < text.index("COPY . .")
    # trainyard alone goes on top of the dependencies, and the whole is checked.
    assert re.search(r"^RUN pip wheel --no-deps .* \.$", text[text.index("COPY . .") :], re.M)
    venv = final.index("COPY --from=dependencies /opt/trainyard /opt/trainyard")
    assert (
        venv
        < final.index("pip install --no-deps --no-index /tmp/wheels/")
        < final.index("pip check")
    )


def locked() -> dict[str, str]:
    """requirements.lock as {canonical name: version}, checking each entry is pinned and hashed."""
    pins: dict[str, str] = {}
    entries = re.split(r"\n(?=\S)", (ROOT / "requirements.lock").read_text())
    for entry in entries:
        if not entry.strip() or entry.startswith("#"):
            continue
        first = entry.split("\\", 1)[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;]+)", first)
        assert match, f"not pinned: {first}"
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), f"no hash: {first}"
        pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def test_lock_pins_every_dependency_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["flower"]]
    pins = locked()
    for line in wanted:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is missing from requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} does not satisfy pyproject's {requirement}: run `make lock`"
        )
    assert "trainyard" not in pins
    assert "setuptools" in pins, "the image builds trainyard with the locked setuptools"


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


def required_env() -> dict[str, str]:
    """The environment with every value compose requires set (to placeholders)."""
    required = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "TRAINYARD_SECRET_KEY",
                "TRAINYARD_APP_DB_PASSWORD", "FLOWER_USER", "FLOWER_PASSWORD")  # fmt: skip
    return {**os.environ, **dict.fromkeys(required, "test-only")}


def compose_command(tmp_path: Path, *files: Path) -> list[str]:
    """`docker compose` on these files, reading the test's variables, not a developer's .env."""
    empty = tmp_path / "empty.env"
    empty.write_text("")
    named = [arg for path in files for arg in ("-f", str(path))]
    return ["docker", "compose", *named, "--env-file", str(empty)]


def resolved_services(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """The services as `docker compose config` resolves them, the flower profile on."""
    result = subprocess.run(
        [*command, "--profile", "flower", "config", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def refuses(command: list[str], env: dict[str, str], missing: str) -> bool:
    """Whether compose stops before starting anything, naming the missing variable."""
    result = subprocess.run(
        [*command, "config", "-q"], env=env, capture_output=True, text=True, timeout=60
    )
    return result.returncode != 0 and missing in result.stderr


@pytest.mark.skipif(not docker_compose_works(), reason="no working `docker compose` here")
def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    env = required_env()
    command = compose_command(tmp_path, COMPOSE)
    resolved = resolved_services(command, env)
    assert resolved["worker"]["deploy"]["replicas"] == 2
    assert resolved["web"]["ports"][0]["host_ip"] == "127.0.0.1"
    # A required value left empty stops compose before anything starts.
    del env["TRAINYARD_APP_DB_PASSWORD"]
    assert refuses(command, env, "TRAINYARD_APP_DB_PASSWORD")


@pytest.mark.skipif(not docker_compose_works(), reason="no working `docker compose` here")
def test_the_rabbitmq_override_moves_every_service_to_rabbitmq(tmp_path: Path) -> None:
    env = {**required_env(), "RABBITMQ_PASSWORD": "rabbit-only"}
    command = compose_command(tmp_path, COMPOSE, ROOT / "docker-compose.rabbitmq.yml")
    resolved = resolved_services(command, env)
    assert "redis" not in resolved, "Redis starts only in its own profile"
    assert resolved["rabbitmq"]["volumes"][0]["target"] == "/var/lib/rabbitmq"
    assert "ports" not in resolved["rabbitmq"], "the broker is reachable from the network only"
    for name in TRAINYARD_SERVICES:
        url = resolved[name]["environment"]["TRAINYARD_BROKER_URL"]
        assert url == "amqp://trainyard:rabbit-only@rabbitmq:5672//", name
        assert "redis" not in resolved[name].get("depends_on", {}), name
    for name in ("web", "worker", "flower"):
        assert resolved[name]["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    del env["RABBITMQ_PASSWORD"]
    assert refuses(command, env, "RABBITMQ_PASSWORD")
