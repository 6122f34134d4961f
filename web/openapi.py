"""The OpenAPI 3.1 document, built from the API's routes and the pydantic models that validate them.

Each API view carries its contract through `@operation(...)`: the query and body models it
validates with and the response model of each status. The document walks the app's URL map, so a
route, a filter or a field cannot exist in the code and be missing from the document.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, jsonify
from markupsafe import Markup, escape
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.read.models import ErrorOut

REF = "#/components/schemas/{model}"
ERRORS = {
    400: "Malformed request: bad JSON, an unknown or invalid query parameter.",
    401: "The token is needed: writes when the server sets one, reads too when it is private.",
    403: "A cross-site write (the browser's Origin or Sec-Fetch-Site says so).",
    404: "No such run.",
    409: "The run's state does not allow this, or an Idempotency-Key was reused differently.",
    413: "The body is over the size limit.",
    415: "The body is not application/json (writes always send JSON, `{}` when empty).",
    422: "A value fails the schema, or the job's estimated compute is over the limit.",
    429: "The queue is full; `Retry-After` says when to try again.",
    503: "The broker is unreachable (the run was stored and marked failed), or the results store "
    "is (nothing was changed; `Retry-After` says when to try again).",
}
# Any operation can meet a results store that is restarting or failing over.
STORE_DOWN = (
    "The results store is unreachable; nothing was changed. `Retry-After` says when to retry."
)
CSV = "text/csv"


@dataclass(frozen=True)
class FileResponse:
    """A response that is a file, not JSON: its media type and what it holds."""

    media_type: str
    description: str


KERAS_FILE = FileResponse(
    "application/octet-stream", "The trained model, a `.keras` file (a zip archive)."
)
RUN_ID = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}


# The document's groups of operations, as generated clients name their modules.
TAGS = {
    "runs": "Submit, follow, compare and cancel training runs.",
    "studies": "Configurations x seed replicates, and whether their differences beat the noise.",
    "cluster": "The queue and the workers.",
    "meta": "The service itself.",
}


def operation(
    summary: str,
    responses: dict[int, type[BaseModel] | FileResponse | str],
    *,
    operation_id: str,
    tag: str,
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    secured: bool = False,
    csv: bool = False,
    headers: dict[str, str] | None = None,
    raw_body: FileResponse | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Attach a view's contract: responses by status (a model, or an error description).
    `raw_body`: a file the body may be instead of JSON."""

    def attach(view: Callable[..., Any]) -> Callable[..., Any]:
        assert tag in TAGS, tag
        vars(view)["openapi"] = {
            "operation_id": operation_id,
            "tag": tag,
            "summary": summary,
            "responses": responses,
            "query": query,
            "body": body,
            "secured": secured,
            "csv": csv,
            "headers": headers or {},
            "raw_body": raw_body,
        }
        return view

    return attach


def answer(model: BaseModel) -> Response:
    """A view's answer: its response model as the JSON the document describes."""
    return jsonify(model.model_dump(mode="json"))


def _models(contracts: list[dict[str, Any]]) -> list[tuple[type[BaseModel], str]]:
    pairs: dict[tuple[type[BaseModel], str], None] = {(ErrorOut, "serialization"): None}
    for contract in contracts:
        for model in (contract["query"], contract["body"]):
            if model is not None:
                pairs[(model, "validation")] = None
        for response in contract["responses"].values():
            if isinstance(response, type):
                pairs[(response, "serialization")] = None
    return list(pairs)


def _query_parameters(model: type[BaseModel], schemas: dict[str, Any]) -> list[dict[str, Any]]:
    """One `in: query` parameter per field, its schema taken from the model's own."""
    name = model.__name__
    schema = schemas.pop(name, None) or model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    parameters = []
    for field, prop in schema["properties"].items():
        prop = dict(prop)
        # A query parameter is absent rather than null.
        if "anyOf" in prop:
            options = [o for o in prop.pop("anyOf") if o.get("type") != "null"]
            prop.update(options[0] if len(options) == 1 else {"anyOf": options})
        if prop.get("default") is None:
            prop.pop("default", None)
        description = prop.pop("description", "")
        prop.pop("title", None)
        parameter = {
            "name": field,
            "in": "query",
            "required": field in required,
            "description": description,
            "schema": prop,
        }
        if prop.get("type") == "array":
            # Lists are written `ids=3,7,9`.
            parameter.update(style="form", explode=False)
        parameters.append(parameter)
    return parameters


def _path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    parameters = []
    for converter, name in re.findall(r"<(?:(\w+):)?(\w+)>", rule):
        schema = RUN_ID if converter == "int" else {"type": "string"}
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule), parameters


def _response(
    status: int, response: type[BaseModel] | FileResponse | str, contract: dict[str, Any]
) -> Any:
    if isinstance(response, FileResponse):
        schema = {"type": "string", "format": "binary"}
        return {
            "description": response.description,
            "content": {response.media_type: {"schema": schema}},
        }
    if isinstance(response, str):
        return {
            "description": response,
            "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorOut")}}},
        }
    content: dict[str, Any] = {
        "application/json": {"schema": {"$ref": REF.format(model=response.__name__)}}
    }
    if contract["csv"] and status == 200:
        content[CSV] = {"schema": {"type": "string"}}
    answer: dict[str, Any] = {"description": response.__doc__ or "", "content": content}
    if status in (200, 202) and contract["headers"]:
        answer["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in contract["headers"].items()
        }
    return answer


def build_document(app: Flask) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of every documented route of the app."""
    routes = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions.get(rule.endpoint)
        contract = getattr(view, "openapi", None)
        if contract is not None:
            routes.append((rule, view, contract))
    _, defs = models_json_schema(
        [(m, mode) for m, mode in _models([c for _, _, c in routes])], ref_template=REF
    )
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    query_models = {c["query"] for _, _, c in routes if c["query"] is not None}
    paths: dict[str, dict[str, Any]] = {}
    parameters_of = {}
    for model in query_models:
        parameters_of[model] = _query_parameters(model, schemas)
    for rule, view, contract in routes:
        path, path_parameters = _path(rule.rule)
        method = next(m for m in sorted(rule.methods or ()) if m not in ("HEAD", "OPTIONS"))
        item: dict[str, Any] = {
            "operationId": contract["operation_id"],
            "tags": [contract["tag"]],
            "summary": contract["summary"],
            "description": (view.__doc__ or "").strip(),
            "parameters": path_parameters
            + (parameters_of[contract["query"]] if contract["query"] else []),
            "responses": {
                str(status): _response(status, response, contract)
                for status, response in sorted({503: STORE_DOWN, **contract["responses"]}.items())
            },
        }
        if contract["body"] is not None:
            item["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": REF.format(model=contract["body"].__name__)}
                    }
                },
            }
        if contract.get("raw_body") is not None:
            raw = contract["raw_body"]
            content = item["requestBody"]["content"]
            content[raw.media_type] = {"schema": {"type": "string", "format": "binary"}}
            item["requestBody"]["description"] = raw.description
        if contract["secured"]:
            item["security"] = [{"bearer": []}]
        if rule.endpoint == "api.create":
            item["parameters"].append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "A retried submit with the same key returns the same run.",
                    "schema": {"type": "string", "maxLength": 200},
                }
            )
        paths.setdefault(path, {})[method.lower()] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "trainyard",
            "version": "1",
            "description": "Queue TensorFlow MNIST training runs and query their history. "
            'Every error answers `{"error": {"code", "message", "fields"}}`.',
        },
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Needed by writes when the server sets TRAINYARD_API_TOKEN.",
                }
            },
        },
    }


def type_label(schema: dict[str, Any]) -> str:
    """A short human reading of a JSON schema: `integer ≥ 1`, `list of RunOut`, `adam | sgd`."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(type_label(option) for option in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(str(v) for v in schema["enum"])
    if "const" in schema:
        return repr(schema["const"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {type_label(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map of {type_label(schema['additionalProperties'])}"
    bounds = [
        f"{symbol} {schema[key]}"
        for key, symbol in (
            ("minimum", "≥"),
            ("exclusiveMinimum", ">"),
            ("maximum", "≤"),
            ("exclusiveMaximum", "<"),
        )
        if key in schema
    ]
    if "format" in schema:
        kind = f"{kind} ({schema['format']})"
    if "maxLength" in schema:
        bounds.append(f"≤ {schema['maxLength']} chars")
    return " ".join([kind, *bounds]) if bounds else kind


def inline_code(text: str) -> Markup:
    """Escape `text` for HTML and show its `backticked` spans as code."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))
