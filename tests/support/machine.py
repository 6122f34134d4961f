"""What the tests use of this machine: the repository, MNIST, and the servers on their default
ports (each overridable by an environment variable, docs/development.md)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from shared.config import Settings
from shared.ops.pgadmin import scratch_database

ROOT = Path(__file__).resolve().parents[2]
# The broker the worker tests use: the machine's Redis unless TRAINYARD_TEST_BROKER_URL names another.
REDIS_URL = os.environ.get("TRAINYARD_TEST_BROKER_URL", "redis://127.0.0.1:6379/0")
# The machine's RabbitMQ, for the tests that run on each broker.
RABBIT_URL = os.environ.get("TRAINYARD_TEST_RABBIT_URL", "amqp://guest:guest@127.0.0.1:5672//")
# The PostgreSQL server tests that need one make their own databases on.
PG_SERVER = os.environ.get(
    "TRAINYARD_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
# The brokers trainyard supports, as `broker_url` names them.
BROKERS = ("redis", "rabbitmq", "embedded")


def mnist_dir() -> Path:
    """The MNIST folder tests read: TRAINYARD_DATA_DIR, else ../shared/datasets/mnist."""
    configured = os.environ.get("TRAINYARD_DATA_DIR")
    return (
        Path(configured).resolve() if configured else ROOT.parent / "shared" / "datasets" / "mnist"
    )


@contextmanager
def empty_database(folder: Path) -> Iterator[str]:
    """An empty database for the tests: on the PostgreSQL server TRAINYARD_TEST_DATABASE_URL names
    when it is set (made for the block, dropped after), else a SQLite file in `folder`."""
    server = os.environ.get("TRAINYARD_TEST_DATABASE_URL")
    if server:
        with scratch_database(server) as url:
            yield url
    else:
        folder.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{folder / 'trainyard.db'}"


def broker_url(kind: str, folder: Path) -> str:
    """The URL of a broker of this kind: the machine's Redis or RabbitMQ, or the embedded broker
    on a SQLite file in `folder`."""
    return {
        "redis": REDIS_URL,
        "rabbitmq": RABBIT_URL,
        "embedded": f"sqla+sqlite:///{folder / 'broker.db'}",
    }[kind]


def queued_messages(settings: Settings) -> int:
    """How many messages wait in the settings' queue on their Redis broker."""
    return int(redis.Redis.from_url(settings.broker_url).llen(settings.queue))


def empty_queue(settings: Settings) -> None:
    """Drop every message of the settings' queue on their Redis broker."""
    redis.Redis.from_url(settings.broker_url).delete(settings.queue)


def postgres_problem(server: str = PG_SERVER) -> str | None:
    """Why the PostgreSQL server does not answer, or None when it does."""
    engine = create_engine(server, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return None
    except OperationalError as exc:
        return f"no PostgreSQL at {make_url(server).render_as_string()}: {exc.orig}"
    finally:
        engine.dispose()
