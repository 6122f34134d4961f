"""Contract tests of the JSON API: every endpoint, its answers and its error codes."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from flask.testing import FlaskClient
from pydantic import BaseModel
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.domain.status import RunStatus
from shared.read.models import (
    CompareOut,
    HealthOut,
    MetricsOut,
    QueueOut,
    RunDetail,
    RunList,
    WorkersOut,
)
from shared.store.migrate import upgrade
from shared.store.workers import register_worker, stop_worker
from tests.builders import EVALUATION, make_run
from tests.support.app import client_for, create_test_app
from tests.support.machine import queued_messages
from tests.support.runs import run_count
from tests.support.servers import postgres_server

TOKEN = "s3cret"


def as_json(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """An answer read as its response model and written back: it fails unless the answer is one."""
    return model.model_validate(data).model_dump(mode="json")


@pytest.fixture()
def secured(idle: Settings) -> FlaskClient:
    """A client of an app on the idle queue, with an API token set."""
    return client_for(idle.with_overrides(api_token=TOKEN))


def assert_error(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert set(error) == {"code", "message", "fields"}
    if field is not None:
        assert field in error["fields"], error
    return error


def test_submit_answers_202_with_location_and_sends_one_message(
    api: FlaskClient, idle: Settings
) -> None:
    response = api.post("/api/runs", json={"name": "tiny", "params": {"epochs": 2}})
    assert response.status_code == 202
    run = as_json(RunDetail, response.get_json())
    assert response.headers["Location"] == f"/api/runs/{run['id']}"
    assert run["status"] == "queued" and run["queue_position"] == 1
    assert run["params"]["epochs"] == 2 and run["params"]["seed"] is not None
    assert queued_messages(idle) == 1


def test_retry_with_the_same_idempotency_key_makes_one_run_and_one_message(
    api: FlaskClient, idle: Settings, session: Session
) -> None:
    body = {"params": {"epochs": 1, "train_samples": 500}}
    headers = {"Idempotency-Key": "batch-7"}
    first = api.post("/api/runs", json=body, headers=headers)
    again = api.post("/api/runs", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert run_count(session) == 1
    assert queued_messages(idle) == 1
    changed = api.post("/api/runs", json={"params": {"epochs": 2}}, headers=headers)
    assert_error(changed, 409, "Idempotency-Key")
    assert run_count(session) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"params": {"epochs": 0}}, "params.epochs"),
        ({"params": {"epochs": "3"}}, "params.epochs"),
        ({"params": {"normalize": 1}}, "params.normalize"),
        ({"params": {"learning_rate": 2}}, "params.learning_rate"),
        ({"params": {"optimizer": "adamw"}}, "params.optimizer"),
        ({"params": {"colour": "red"}}, "params.colour"),
        ({"params": []}, "params"),
        ({"name": "x" * 201}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"nme": "typo"}, "nme"),
    ],
)
def test_submit_rejects_invalid_bodies_with_422_naming_the_field(
    api: FlaskClient, session: Session, body: dict[str, Any], field: str
) -> None:
    assert_error(api.post("/api/runs", json=body), 422, field)
    assert run_count(session) == 0


def test_submit_accepts_integral_floats_for_integers(api: FlaskClient) -> None:
    response = api.post("/api/runs", json={"params": {"epochs": 3.0}})
    assert response.status_code == 202
    assert response.get_json()["params"]["epochs"] == 3


def test_bad_bodies_get_400_413_415(api: FlaskClient, settings: Settings) -> None:
    assert_error(api.post("/api/runs", data="{oops", content_type="application/json"), 400, "body")
    assert_error(api.post("/api/runs", json=[1, 2]), 400, "body")
    assert_error(api.post("/api/runs", data="epochs=3", content_type="text/plain"), 415)
    big = {"name": "x", "params": {}, "pad": "y" * (settings.max_body_bytes + 10)}
    assert_error(api.post("/api/runs", json=big), 413)
    long_key = {"Idempotency-Key": "k" * 201}
    assert_error(api.post("/api/runs", json={}, headers=long_key), 400, "Idempotency-Key")


def test_writes_need_the_token_when_one_is_set(
    secured: FlaskClient, session: Session, idle: Settings
) -> None:
    run = make_run(session, epochs=1)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        assert_error(secured.post("/api/runs", json={}, headers=headers), 401, "Authorization")
        assert_error(secured.post(f"/api/runs/{run.id}/cancel", json={}, headers=headers), 401)
        assert_error(secured.post(f"/api/runs/{run.id}/clone", json={}, headers=headers), 401)
    assert run_count(session) == 1
    assert queued_messages(idle) == 0
    session.refresh(run)
    assert run.status == RunStatus.QUEUED
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert secured.post("/api/runs", json={}, headers=good).status_code == 202
    assert secured.get("/api/runs").status_code == 200  # reads stay open


def test_show_returns_everything_known_about_a_finished_run(
    api: FlaskClient, session: Session
) -> None:
    run = make_run(
        session,
        name="done",
        status=RunStatus.SUCCEEDED,
        epochs_done=2,
        epochs=2,
        dropout=0.1,
        test_loss=0.3,
        test_accuracy=0.91,
        evaluation=EVALUATION,
    )
    answer = as_json(RunDetail, api.get(f"/api/runs/{run.id}").get_json())
    assert answer["status"] == "succeeded" and answer["test_accuracy"] == 0.91
    assert answer["params"]["dropout"] == 0.1 and answer["reproducibility"]["seed"] == 1
    assert answer["worker"] == "builder@test" and answer["attempt"] == 1
    assert answer["evaluation"]["per_class_accuracy"] == [1.0] * 10
    assert answer["evaluation"]["misclassified"][0]["predicted"] == 6
    assert answer["created_at"].endswith("Z") and answer["duration_seconds"] is not None


def test_unknown_runs_are_404(api: FlaskClient) -> None:
    for path in ("/api/runs/999", "/api/runs/999/metrics", "/api/runs/99999999999999999999"):
        assert_error(api.get(path), 404)
    assert_error(api.post("/api/runs/999/cancel", json={}), 404)
    assert_error(api.post("/api/runs/999/clone", json={}), 404)


def test_metrics_as_json_and_as_csv(api: FlaskClient, session: Session) -> None:
    run = make_run(session, status=RunStatus.RUNNING, epochs_done=3, epochs=5)
    answer = as_json(MetricsOut, api.get(f"/api/runs/{run.id}/metrics").get_json())
    assert [row["epoch"] for row in answer["epochs"]] == [1, 2, 3]
    for response in (
        api.get(f"/api/runs/{run.id}/metrics?format=csv"),
        api.get(f"/api/runs/{run.id}/metrics", headers={"Accept": "text/csv"}),
    ):
        assert response.status_code == 200 and response.mimetype == "text/csv"
        rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
        assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
        assert float(rows[1]["loss"]) == pytest.approx(0.5)
    assert_error(api.get(f"/api/runs/{run.id}/metrics?format=xml"), 400, "format")


def test_cancel_a_queued_run_then_409_once_finished(api: FlaskClient, session: Session) -> None:
    run = make_run(session)
    response = api.post(f"/api/runs/{run.id}/cancel", json={})
    assert response.status_code == 202
    assert as_json(RunDetail, response.get_json())["status"] == "cancelled"
    assert_error(api.post(f"/api/runs/{run.id}/cancel", json={}), 409, "status")


def test_clone_copies_params_applies_overrides_and_draws_a_new_seed(
    api: FlaskClient, session: Session, idle: Settings
) -> None:
    source = make_run(session, name="base", status=RunStatus.FAILED, hidden_units=64, seed=7)
    response = api.post(f"/api/runs/{source.id}/clone", json={"params": {"dropout": 0.5}})
    assert response.status_code == 202
    clone = as_json(RunDetail, response.get_json())
    assert response.headers["Location"] == f"/api/runs/{clone['id']}"
    assert clone["id"] != source.id and clone["name"] == "clone of base"
    assert clone["params"]["hidden_units"] == 64 and clone["params"]["dropout"] == 0.5
    assert clone["params"]["seed"] != 7  # 1 chance in 2**31 of a false failure
    same_seed = api.post(
        f"/api/runs/{source.id}/clone", json={"name": "again", "params": {"seed": 7}}
    )
    assert same_seed.get_json()["params"]["seed"] == 7 and same_seed.get_json()["name"] == "again"
    assert api.post(f"/api/runs/{source.id}/clone", json={}).status_code == 202  # an empty body
    assert_error(api.post(f"/api/runs/{source.id}/clone"), 415, "Content-Type")  # no JSON at all
    assert queued_messages(idle) == 3
    assert_error(
        api.post(f"/api/runs/{source.id}/clone", json={"params": {"epochs": 0}}),
        422,
        "params.epochs",
    )


def test_compare_names_differing_params_and_deltas(api: FlaskClient, session: Session) -> None:
    a = make_run(session, status=RunStatus.SUCCEEDED, epochs_done=2, test_accuracy=0.9, epochs=2)
    b = make_run(
        session, status=RunStatus.SUCCEEDED, epochs_done=2, test_accuracy=0.95, epochs=2, dropout=0
    )
    c = make_run(session, epochs=2)
    answer = as_json(CompareOut, api.get(f"/api/compare?ids={a.id},{b.id}").get_json())
    assert answer["differing_params"] == ["dropout"]
    assert answer["runs"][1]["delta"]["test_accuracy"] == pytest.approx(0.05)
    assert len(answer["epochs"][str(a.id)]) == 2
    with_base = api.get(f"/api/compare?ids={a.id},{b.id}&baseline={c.id}").get_json()
    assert with_base["baseline"] == c.id and with_base["ids"] == [c.id, a.id, b.id]
    assert_error(api.get(f"/api/compare?ids={a.id},99999"), 404, "ids")
    for bad in ("", "?ids=1", f"?ids={a.id},{a.id}", "?ids=1,x", "?ids=0,1", "?ids=1,2&x=1"):
        assert_error(api.get(f"/api/compare{bad}"), 400)


def test_queue_lists_queued_runs_oldest_first(api: FlaskClient, session: Session) -> None:
    first, second = make_run(session), make_run(session)
    make_run(session, status=RunStatus.RUNNING)
    third = make_run(session)
    answer = as_json(QueueOut, api.get("/api/queue").get_json())
    assert [(r["id"], r["position"]) for r in answer["runs"]] == [
        (first.id, 1),
        (second.id, 2),
        (third.id, 3),
    ]
    assert answer["total"] == 3
    assert_error(api.get("/api/queue?page=2"), 400, "page")


def test_workers_alive_by_default_all_on_request(api: FlaskClient, session: Session) -> None:
    register_worker(session, "w1@host", "host", 11, 2)
    register_worker(session, "w2@host", "host", 12, 1)
    stop_worker(session, "w2@host")
    session.commit()
    run = make_run(session, status=RunStatus.RUNNING, worker="w1@host")
    answer = as_json(WorkersOut, api.get("/api/workers").get_json())
    assert [(w["name"], w["running"]) for w in answer["workers"]] == [("w1@host", [run.id])]
    every = api.get("/api/workers?all=1").get_json()["workers"]
    assert [(w["name"], w["alive"]) for w in every] == [("w1@host", True), ("w2@host", False)]
    assert_error(api.get("/api/workers?all=yes"), 400, "all")


def test_health_is_200_when_everything_answers(api: FlaskClient) -> None:
    response = api.get("/api/health")
    answer = as_json(HealthOut, response.get_json())
    assert response.status_code == 200 and answer["ok"] is True
    assert {name for name, check in answer["checks"].items() if check["ok"]} == {
        "database",
        "broker",
        "schema",
    }


def test_health_is_503_when_the_broker_is_down(settings: Settings) -> None:
    down = create_test_app(settings.with_overrides(broker_url="redis://127.0.0.1:1/0"))
    response = down.test_client().get("/api/health")
    answer = as_json(HealthOut, response.get_json())
    assert response.status_code == 503 and answer["ok"] is False
    assert answer["checks"]["broker"]["ok"] is False
    assert answer["checks"]["database"]["ok"] is True


def test_health_is_503_when_the_schema_is_behind(settings: Settings, tmp_path: Any) -> None:
    from shared.store.migrate import downgrade, upgrade

    url = f"sqlite:///{tmp_path / 'behind.db'}"
    upgrade(url)
    behind = create_test_app(settings.with_overrides(database_url=url))
    downgrade(url, "base")
    response = behind.test_client().get("/api/health")
    assert response.status_code == 503
    assert response.get_json()["checks"]["schema"]["ok"] is False


def test_list_answers_the_documented_shape(api: FlaskClient, session: Session) -> None:
    make_run(session)
    as_json(RunList, api.get("/api/runs").get_json())


def test_wrong_method_is_405_with_allow(api: FlaskClient) -> None:
    response = api.delete("/api/runs")
    assert_error(response, 405)
    assert "GET" in response.headers["Allow"] and "POST" in response.headers["Allow"]


@pytest.mark.e2e
def test_an_unreachable_store_is_a_503_to_retry_and_nothing_is_queued(
    idle: Settings,
) -> None:
    """The database restarts or fails over under the web app: every request is a 503 with
    Retry-After, not a 500, and a submit sends nothing; once it is back, all answer again."""
    with postgres_server() as postgres:
        upgrade(postgres.url)
        client = client_for(idle.with_overrides(database_url=postgres.url))
        assert client.get("/api/runs").status_code == 200
        postgres.crash()
        for response in (
            client.get("/api/runs"),
            client.get("/api/runs/1"),
            client.post("/api/runs", json={"params": {"epochs": 1}}),
        ):
            assert assert_error(response, 503)["code"] == "store_unavailable"
            assert response.headers["Retry-After"] == "5"
        page = client.get("/runs")
        assert page.status_code == 503 and "unreachable" in page.get_data(as_text=True)
        assert queued_messages(idle) == 0
        postgres.start()
        assert client.post("/api/runs", json={"params": {"epochs": 1}}).status_code == 202
        assert queued_messages(idle) == 1
