"""The Flask app of a test's settings, its test client, and submitting a run through the API."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from shared.config import Settings

# Every app the tests made and have not closed: tests/conftest.py closes them after each test, or
# their database and broker connections would be left open to the garbage collector.
OPEN_APPS: list[Flask] = []


def create_test_app(settings: Settings, csrf: bool = True) -> Flask:
    """The Flask app on these settings, in testing mode; `csrf=False` lets forms post without a
    token, as the tests of what a form does (not of its token) want."""
    from web import create_app

    application = create_app(settings)
    application.config["TESTING"] = True
    application.config["WTF_CSRF_ENABLED"] = csrf
    OPEN_APPS.append(application)
    return application


def close_apps() -> None:
    """Close every app the tests made: its store's connections and its broker connections."""
    while OPEN_APPS:
        application = OPEN_APPS.pop()
        application.extensions["trainyard.store"].close()
        application.extensions["trainyard.dispatcher"].producer.close()


def client_for(settings: Settings, csrf: bool = True) -> FlaskClient:
    """A test client of the app on these settings (the JSON API needs no CSRF token)."""
    return create_test_app(settings, csrf).test_client()


def submit_run(client: FlaskClient, name: str | None = None, **params: Any) -> int:
    """POST /api/runs with these hyperparameters; fail unless it is accepted; return the run's id."""
    body: dict[str, Any] = {"params": params}
    if name is not None:
        body["name"] = name
    response = client.post("/api/runs", json=body)
    assert response.status_code == 202, response.get_json()
    return int(response.get_json()["id"])
