"""The OpenAPI document: generated from the models that validate requests and build answers."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shared.domain.filters import RunQuery

UNDOCUMENTED = {"api.openapi_json", "api.docs"}  # the document and its page describe the rest


@pytest.fixture()
def document(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    return response.get_json()


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
