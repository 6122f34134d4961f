"""Submitting runs through the form (CSRF on) and the API: valid ones queue, invalid ones leave nothing."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.domain.params import Hyperparams
from shared.domain.status import RunStatus
from shared.store.models import Run
from tests.support.app import client_for
from tests.support.machine import queued_messages
from tests.support.pages import csrf_token, form_data
from tests.support.processes import web_process
from tests.support.runs import run_count


def test_the_form_shows_every_hyperparameter_with_its_default(csrf_app: Flask) -> None:
    page = csrf_app.test_client().get("/runs/new").get_data(as_text=True)
    for name, info in Hyperparams.model_fields.items():
        assert f'name="{name}"' in page, name
        if info.default is not None and not isinstance(info.default, bool):
            assert re.search(
                rf'name="{name}"[^>]*value="{re.escape(str(info.default))}"', page
            ) or (
                f'value="{info.default}" selected' in page
                or f'selected value="{info.default}"' in page
            ), name
    assert re.search(r'<input[^>]*\bchecked\b[^>]*name="normalize"', page)


def test_a_valid_form_queues_one_run_and_one_message(
    csrf_app: Flask, session: Session, idle: Settings
) -> None:
    client = csrf_app.test_client()
    response = client.post(
        "/runs/new", data=form_data(csrf_token(client), normalize=None, epochs="3")
    )
    assert response.status_code == 302
    run = session.scalars(select(Run)).one()
    assert response.headers["Location"].endswith(f"/runs/{run.id}")
    assert (run.name, run.epochs, run.normalize, run.status) == (
        "from the form",
        3,
        False,
        RunStatus.QUEUED,
    )
    assert run.task_id and queued_messages(idle) == 1
    body = json.loads(redis.Redis.from_url(idle.broker_url).lindex(idle.queue, 0))
    assert body["headers"]["task"] == "trainyard.train_run"
    assert body["content-type"] == "application/json"


def test_the_form_refuses_a_post_without_its_csrf_token(
    csrf_app: Flask, session: Session, idle: Settings
) -> None:
    response = csrf_app.test_client().post("/runs/new", data=form_data("forged"))
    assert response.status_code in (400, 422)
    assert run_count(session) == 0 and queued_messages(idle) == 0


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("epochs", "0", "greater than or equal to 1"),
        ("epochs", "101", "less than or equal to 100"),
        ("batch_size", "9000", "less than or equal to 8192"),
        ("learning_rate", "0", "greater than 0"),
        ("learning_rate", "1.5", "less than or equal to 1"),
        ("hidden_units", "5000", "less than or equal to 4096"),
        ("dropout", "1", "less than 1"),
        ("validation_split", "0.6", "less than or equal to 0.5"),
        ("train_samples", "50", "greater than or equal to 100"),
        ("seed", "-1", "greater than or equal to 0"),
        ("epochs", "many", "Not a valid integer"),
        ("optimizer", "adagrad", "Not a valid choice"),
    ],
)
def test_each_invalid_field_gets_its_own_error_and_nothing_is_queued(
    csrf_app: Flask, session: Session, idle: Settings, field: str, value: str, reason: str
) -> None:
    client = csrf_app.test_client()
    response = client.post("/runs/new", data=form_data(csrf_token(client), **{field: value}))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    block = re.search(rf'<div class="field has-error" data-field="{field}">(.*?)</div>', page, re.S)
    assert block, f"{field} is marked in error"
    assert reason in block.group(1)
    assert page.count("has-error") == 1, "only the bad field is marked"
    assert run_count(session) == 0 and queued_messages(idle) == 0


def test_the_api_queues_a_run_and_answers_with_its_location(
    api: FlaskClient, session: Session, idle: Settings
) -> None:
    response = api.post(
        "/api/runs", json={"name": "api", "params": {"epochs": 2, "normalize": False}}
    )
    assert response.status_code == 202
    body = response.get_json()
    assert response.headers["Location"] == f"/api/runs/{body['id']}"
    assert (
        body["status"] == "queued"
        and body["params"]["epochs"] == 2
        and body["params"]["normalize"] is False
    )
    assert body["params"]["seed"] is not None and body["queue_position"] == 1
    for key in (
        "id",
        "name",
        "status",
        "params",
        "created_at",
        "started_at",
        "finished_at",
        "worker",
        "attempt",
        "epochs_done",
        "test_loss",
        "test_accuracy",
        "error",
    ):
        assert key in body
    assert api.get(response.headers["Location"]).get_json()["id"] == body["id"]
    listing = api.get("/api/runs").get_json()
    assert [r["id"] for r in listing["runs"]] == [body["id"]] and listing["total"] == 1
    assert listing["runs"][0]["queue_position"] == 1
    assert run_count(session) == 1 and queued_messages(idle) == 1


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"params": {"epochs": 0}}, 422, "params.epochs"),
        ({"params": {"batch_size": "big"}}, 422, "params.batch_size"),
        ({"params": {"optimizer": "adagrad"}}, 422, "params.optimizer"),
        ({"params": {"dropout": 1.0}}, 422, "params.dropout"),
        ({"params": {"learning_rate": -1}}, 422, "params.learning_rate"),
        ({"params": {"train_samples": 60001}}, 422, "params.train_samples"),
        ({"params": {"seed": 2**31}}, 422, "params.seed"),
        ({"params": {"momentum": 0.9}}, 422, "params.momentum"),
        ({"params": []}, 422, "params"),
        ({"name": "x" * 201}, 422, "name"),
        ({"colour": "blue"}, 422, "colour"),
        ([1, 2], 400, "body"),
    ],
)
def test_each_bad_api_field_is_named_and_nothing_is_queued(
    api: FlaskClient, session: Session, idle: Settings, body: Any, status: int, field: str
) -> None:
    response = api.post("/api/runs", json=body)
    assert response.status_code == status
    error = response.get_json()["error"]
    assert field in error["fields"], error
    assert error["message"] and error["code"]
    assert run_count(session) == 0 and queued_messages(idle) == 0


def test_non_json_and_malformed_and_oversized_bodies(
    api: FlaskClient, session: Session, idle: Settings
) -> None:
    assert api.post("/api/runs", data="epochs=3", content_type="text/plain").status_code == 415
    malformed = api.post("/api/runs", data="{not json", content_type="application/json")
    assert malformed.status_code == 400 and "body" in malformed.get_json()["error"]["fields"]
    huge = api.post(
        "/api/runs", data=json.dumps({"name": "x" * 70000}), content_type="application/json"
    )
    assert huge.status_code == 413 and huge.get_json()["error"]["code"] == "payload_too_large"
    assert run_count(session) == 0 and queued_messages(idle) == 0


def test_missing_runs_are_404_in_the_one_error_shape(api: FlaskClient) -> None:
    for path in ("/api/runs/999", "/api/runs/999/metrics"):
        response = api.get(path)
        assert response.status_code == 404
        assert set(response.get_json()["error"]) == {"code", "message", "fields"}


def test_an_unreachable_broker_fails_the_run_instead_of_leaving_it_queued(
    settings: Settings, session: Session
) -> None:
    broken = client_for(settings.with_overrides(broker_url="redis://127.0.0.1:9/0"))
    response = broken.post("/api/runs", json={"params": {}})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "broker_unavailable"
    run = session.scalars(select(Run)).one()
    assert run.status == RunStatus.FAILED and "could not enqueue" in (run.error or "")


def test_the_embedded_broker_makes_its_folder_whatever_the_store(
    settings: Settings, session: Session, tmp_path: Any
) -> None:
    """A store URL of its own and a fresh TRAINYARD_HOME: the SQLite broker's folder is made."""
    home = tmp_path / "fresh" / "home"
    embedded = settings.with_overrides(home=home, broker_url="")
    assert embedded.broker_url == f"sqla+sqlite:///{home / 'broker.db'}" and not home.exists()
    response = client_for(embedded).post("/api/runs", json={})
    assert response.status_code == 202, response.get_json()
    assert (home / "broker.db").exists()
    assert session.get(Run, response.get_json()["id"]).status == RunStatus.QUEUED


def test_the_app_refuses_an_unmigrated_database(tmp_path: Any) -> None:
    from shared.domain.errors import NotMigrated
    from web import create_app

    empty = Settings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'empty.db'}",
        broker_url="redis://127.0.0.1:6379/0",
    )
    with pytest.raises(NotMigrated, match="trainyard db upgrade"):
        create_app(empty)


@pytest.mark.e2e
def test_a_live_server_queues_valid_runs_and_rejects_bad_ones(
    session: Session, idle: Settings
) -> None:
    with web_process(idle) as url:
        _exercise_live_server(url, session, idle)


def _exercise_live_server(live_server: str, session: Session, idle: Settings) -> None:
    def post(body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        request = urllib.request.Request(
            f"{live_server}/api/runs", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read()), dict(response.headers)
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read()), dict(exc.headers)

    status, body, _ = post({"params": {"epochs": 500}})
    assert status == 422 and "params.epochs" in body["error"]["fields"]
    assert run_count(session) == 0 and queued_messages(idle) == 0
    status, body, headers = post({"name": "live", "params": {"epochs": 1}})
    assert status == 202 and headers["Location"].endswith(f"/api/runs/{body['id']}")
    assert run_count(session) == 1 and queued_messages(idle) == 1
