"""The OpenAPI document: generated from the validating models, complete, and true to the answers."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema_rs
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from shared.domain.filters import RunQuery
from shared.domain.status import RunStatus
from shared.read import runs as views
from shared.read.compare import compare_runs
from shared.read.formatting import run_to_dict
from shared.store.queries import latest_epochs
from tests.builders import EVALUATION, make_run

UNDOCUMENTED = {"api.openapi_json", "api.docs"}  # the document and its page describe the rest


@pytest.fixture()
def document(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def conforms(document: dict[str, Any], component: str, instance: Any) -> None:
    """Validate `instance` against a component schema as schemathesis does (formats included)."""
    schema = {**document, "$ref": f"#/components/schemas/{component}"}
    validator = jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
    errors = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(instance)]
    assert not errors, errors


def test_document_is_openapi_31_with_resolvable_refs(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    refs = set(re.findall(r'"\$ref": "#/components/schemas/(\w[\w-]*)"', json.dumps(document)))
    assert refs and refs <= set(document["components"]["schemas"])


def test_every_api_route_is_documented(app: Flask, document: dict[str, Any]) -> None:
    documented = {
        (re.sub(r"\{(\w+)\}", r"<\1>", path), method.upper())
        for path, item in document["paths"].items()
        for method in item
    }
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.endpoint in UNDOCUMENTED:
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"<\1>", rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, (path, method)


def test_list_parameters_are_the_query_model(document: dict[str, Any]) -> None:
    parameters = {p["name"]: p for p in document["paths"]["/api/runs"]["get"]["parameters"]}
    assert set(parameters) == set(RunQuery.model_fields)
    assert parameters["sort"]["schema"]["enum"][:2] == ["id", "name"]
    assert "-test_accuracy" in parameters["sort"]["schema"]["enum"]
    assert parameters["learning_rate_min"]["schema"]["type"] == "number"
    assert parameters["created_after"]["schema"]["format"] == "date-time"
    assert parameters["limit"]["schema"]["maximum"] == 200


def test_request_bodies_come_from_the_hyperparameter_schema(document: dict[str, Any]) -> None:
    body = document["paths"]["/api/runs"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"].endswith("/SubmitRequest")
    schemas = document["components"]["schemas"]
    params_ref = schemas["SubmitRequest"]["properties"]["params"]["$ref"].rsplit("/", 1)[-1]
    epochs = schemas[params_ref]["properties"]["epochs"]
    assert (epochs["minimum"], epochs["maximum"]) == (1, 100)
    assert schemas[params_ref]["additionalProperties"] is False


def test_writes_are_secured_and_errors_documented(document: dict[str, Any]) -> None:
    for path, method in (
        ("/api/runs", "post"),
        ("/api/runs/{run_id}/cancel", "post"),
        ("/api/runs/{run_id}/clone", "post"),
    ):
        operation = document["paths"][path][method]
        assert operation["security"] == [{"bearer": []}]
        assert "401" in operation["responses"]
    assert "security" not in document["paths"]["/api/runs"]["get"]
    assert set(document["paths"]["/api/runs/{run_id}/cancel"]["post"]["responses"]) >= {
        "202",
        "404",
        "409",
    }


@pytest.mark.parametrize(
    "status", [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.FAILED]
)
def test_serialized_runs_match_the_documented_models(
    document: dict[str, Any], session: Session, status: RunStatus
) -> None:
    run = make_run(
        session,
        status=status,
        epochs_done=1 if status != RunStatus.QUEUED else 0,
        test_loss=0.2 if status == RunStatus.SUCCEEDED else None,
        test_accuracy=0.9 if status == RunStatus.SUCCEEDED else None,
        evaluation=EVALUATION if status == RunStatus.SUCCEEDED else None,
    )
    latest = latest_epochs(session, [run.id]).get(run.id)
    summary = run_to_dict(run, latest, 1 if status == RunStatus.QUEUED else None)
    conforms(document, "RunOut", summary)
    conforms(document, "RunDetail", views.run_detail(session, run.id))


def test_comparisons_match_the_documented_model(document: dict[str, Any], session: Session) -> None:
    a = make_run(session, status=RunStatus.SUCCEEDED, epochs_done=2, test_accuracy=0.9)
    b = make_run(session, epochs_done=0, dropout=0.0)
    conforms(document, "CompareOut", compare_runs(session, [a.id, b.id]).to_dict())


def test_a_drifted_answer_would_fail(document: dict[str, Any], session: Session) -> None:
    summary = run_to_dict(make_run(session))
    with pytest.raises(AssertionError):
        conforms(document, "RunOut", {**summary, "status": "paused"})
    with pytest.raises(AssertionError):
        conforms(document, "RunOut", {k: v for k, v in summary.items() if k != "params"})


def test_docs_page_renders_the_document_without_a_cdn(
    client: FlaskClient, document: dict[str, Any]
) -> None:
    response = client.get("/api/docs")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    for path in document["paths"]:
        assert path in html
    for name in document["components"]["schemas"]:
        assert f'id="schema-{name}"' in html
    assert "learning_rate_min" in html and "Idempotency-Key" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_every_operation_documents_the_503_of_a_store_outage(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert "503" in operation["responses"], (method, path)
