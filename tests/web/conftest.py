"""Fixtures of the web tests: an idle queue whose messages a test can count, a client whose runs
go there, and the app with CSRF on, as a browser meets it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shared.config import Settings
from tests.support.app import client_for, create_test_app
from tests.support.machine import empty_queue


@pytest.fixture()
def idle(settings: Settings) -> Iterator[Settings]:
    """The test's settings on a queue of its own that no worker reads, empty at the start, so the
    test can count the messages the app sent (`queued_messages(idle)`); emptied again after."""
    idle = settings.with_overrides(queue=f"{settings.queue}-idle-{uuid.uuid4().hex[:6]}")
    empty_queue(idle)
    yield idle
    empty_queue(idle)


@pytest.fixture()
def api(idle: Settings) -> FlaskClient:
    """A test client of the app on the idle queue."""
    return client_for(idle)


@pytest.fixture()
def csrf_app(idle: Settings) -> Flask:
    """The app on the idle queue with CSRF on, as a browser meets it."""
    return create_test_app(idle)
