"""Request data into validated models, for the JSON API and the dashboard alike.

Query strings, JSON bodies and the clone/compare arguments of the pages all pass through here, so a
value means the same thing wherever it arrives and a bad one is refused with the same reasons.
"""

from __future__ import annotations

from typing import Any, TypeVar, get_args

from flask import request
from pydantic import BaseModel, ValidationError
from werkzeug.datastructures import MultiDict

from shared.domain.errors import BadRequest, InvalidParams, UnsupportedMediaType, field_errors
from shared.domain.querying import QueryModel

Q = TypeVar("Q", bound=QueryModel)
B = TypeVar("B", bound=BaseModel)


def _kept(values: list[str], from_form: bool) -> list[str]:
    # A dashboard GET form sends every input, so there a blank one means "not filled in". The API
    # takes what it is sent: a blank is a value, and the schema decides whether it is valid.
    return [value.strip() for value in values if value.strip()] if from_form else values


def flat_args(args: MultiDict[str, str], from_form: bool = False) -> dict[str, str]:
    """A query string as one value per key, repeated values joined with commas."""
    flat = {key: _kept(values, from_form) for key, values in args.lists()}
    return {key: ",".join(values) for key, values in flat.items() if values}


def query(model: type[Q], args: MultiDict[str, str] | None = None, from_form: bool = False) -> Q:
    """Validate a query string (the request's by default) against `model`.

    A key the model calls repeatable may come once per value and reads as the comma-joined list;
    any other repeated key, an unknown key or a bad value is a 400 that names it. `from_form`
    drops blank values, as a dashboard form sends them.
    """
    args = request.args if args is None else args
    repeated = [
        key
        for key, values in args.lists()
        if key not in model.repeatable and len(_kept(values, from_form)) > 1
    ]
    if repeated:
        raise BadRequest(
            "a query parameter was given more than once", dict.fromkeys(repeated, "given twice")
        )
    try:
        return model.model_validate(flat_args(args, from_form))
    except ValidationError as exc:
        fields = {
            key: "unknown filter or parameter" if reason == "unknown field" else reason
            for key, reason in field_errors(exc, top_level=True).items()
        }
        raise BadRequest.for_fields("invalid query", fields) from exc


def json_object() -> dict[str, Any]:
    """Return the request's JSON object ({} when there is no body), or raise 415 / 400."""
    if not request.get_data(cache=True) and not request.content_type:
        return {}
    if not request.is_json:
        raise UnsupportedMediaType(
            "send the body as application/json", {"Content-Type": "must be application/json"}
        )
    data = request.get_json(silent=True)
    if data is None:
        raise BadRequest("the body is not valid JSON", {"body": "malformed JSON"})
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object", {"body": "must be an object"})
    return data


def _integral(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """Read 3.0 as 3 for integer fields, as JSON Schema does (strict pydantic would refuse it),
    in nested models too."""
    out = dict(data)
    for name, info in model.model_fields.items():
        value = out.get(name)
        kinds = get_args(info.annotation) or (info.annotation,)
        if int in kinds and isinstance(value, float) and value.is_integer():
            out[name] = int(value)
        elif isinstance(value, dict):
            nested = [k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)]
            if nested:
                out[name] = _integral(nested[0], value)
    return out


def body(model: type[B]) -> B:
    """Validate the JSON body strictly against `model`, raising 422 that names each bad field."""
    data = _integral(model, json_object())
    try:
        # Strict: a JSON body has real types, so "3" for an int or 0 for a bool is a mistake.
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise InvalidParams.for_fields("invalid request", field_errors(exc)) from exc
