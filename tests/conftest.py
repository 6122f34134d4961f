"""Fixtures on real parts, for every test: a migrated database (SQLite, or PostgreSQL when named),
settings, a session, the app and its client, and the session's worker, web server and browser.

TRAINYARD_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres switches the
store to PostgreSQL: each test session creates a database of its own on that server and drops it
after. TRAINYARD_TEST_BROKER_URL overrides the broker worker tests use (default: the local Redis).
Fixtures only web tests use are in tests/web/conftest.py; the helpers are in tests/support/.

`--only-store-tests` keeps the tests that use the session's database and deselects the rest: the
PostgreSQL tier (`make test-postgres`) repeats only what can answer differently there.
"""

from __future__ import annotations

import gc
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser, sync_playwright
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.store.engine import Store
from shared.store.migrate import upgrade
from shared.store.models import Base
from tests.support.app import close_apps, create_test_app
from tests.support.browser import CHROMIUM_ARGS
from tests.support.machine import REDIS_URL, empty_database, mnist_dir
from tests.support.processes import web_process, worker_process


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--only-store-tests",
        action="store_true",
        help="run only the tests that use the session's database (the PostgreSQL tier)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("only_store_tests"):
        return
    uses = {item: "database_url" in getattr(item, "fixturenames", ()) for item in items}
    config.hook.pytest_deselected(items=[item for item in items if not uses[item]])
    items[:] = [item for item in items if uses[item]]


@pytest.fixture(autouse=True)
def _close_apps() -> Iterator[None]:
    """Close the apps a test made once it ends (tests/support/app.py), then collect garbage, so an
    unclosed connection or socket fails the test that left it (its ResourceWarning is an error)
    rather than whichever test the collector next runs in."""
    yield
    close_apps()
    gc.collect()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database for this test session: PostgreSQL when named, else a SQLite file."""
    with empty_database(tmp_path_factory.mktemp("store")) as url:
        yield url


@pytest.fixture(scope="session")
def base_settings(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Settings:
    """Settings of this test session: its own home, database and queue; the local Redis broker."""
    home: Path = tmp_path_factory.mktemp("home")
    return Settings(
        home=home,
        database_url=database_url,
        broker_url=REDIS_URL,
        data_dir=mnist_dir(),
        allow_download=False,
        secret_key="test-secret",
        queue=f"trainyard-test-{uuid.uuid4().hex[:8]}",
        heartbeat_interval=1.0,
        heartbeat_timeout=30.0,
    )


@pytest.fixture(scope="session")
def migrated(base_settings: Settings) -> Settings:
    """The session's database, upgraded to the latest revision."""
    upgrade(base_settings.database_url)
    return base_settings


@pytest.fixture(scope="session")
def store(migrated: Settings) -> Iterator[Store]:
    """The test session's store, on its migrated database."""
    store = Store(migrated.database_url)
    yield store
    store.close()


@pytest.fixture()
def settings(migrated: Settings, store: Store) -> Settings:
    """Settings for one test, on an emptied, migrated database."""
    with store.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    return migrated


@pytest.fixture()
def session(settings: Settings, store: Store) -> Iterator[Session]:
    """A session on the test database; the test commits what it wants others to see."""
    s = store.session()
    yield s
    s.rollback()
    s.close()


@pytest.fixture()
def app(settings: Settings) -> Flask:
    """The Flask app on the test settings, CSRF off (the form tests use `csrf_app`)."""
    return create_test_app(settings, csrf=False)


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    """A test client of `app`: its runs go to the session's queue, which `worker` reads."""
    return app.test_client()


@pytest.fixture(scope="session")
def worker(migrated: Settings) -> Iterator[Settings]:
    """A real Celery worker process on the local Redis, shared by the tests that need one."""
    with worker_process(migrated, name="session-worker"):
        yield migrated


@pytest.fixture(scope="session")
def live_server(migrated: Settings) -> Iterator[str]:
    """The web app under gunicorn on a free loopback port; yields its base URL."""
    with web_process(migrated) as url:
        yield url


@pytest.fixture()
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium, driven by Playwright."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()
