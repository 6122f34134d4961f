"""The JSON API: runs, their metrics, and the actions on them."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import BadRequest, InvalidParams, UnsupportedMediaType
from shared.params import field_errors, parse_params
from shared.queries import list_runs, parse_query
from shared.runs import epochs_of, get_run, latest_epochs, queue_position, request_cancel
from shared.serializers import epoch_to_dict, evaluation_to_dict, run_to_dict
from web.auth import require_token
from web.database import get_session
from web.queue import submit

bp = Blueprint("api", __name__, url_prefix="/api")


class SubmitRequest(BaseModel):
    """Body of POST /api/runs."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200, description="A label; one is made up if empty.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Hyperparameters; omitted ones take their defaults."
    )


def json_body() -> dict[str, Any]:
    """Return the request's JSON object, or raise 415 (not JSON) / 400 (malformed)."""
    if not request.is_json:
        raise UnsupportedMediaType(
            "send the body as application/json", {"Content-Type": "must be application/json"}
        )
    body = request.get_json(silent=True)
    if body is None:
        raise BadRequest("the body is not valid JSON", {"body": "malformed JSON"})
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", {"body": "must be an object"})
    return body


def validate(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """Validate a body against `model`, raising 422 that names each bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = field_errors(exc)
        summary = "; ".join(f"{key}: {reason}" for key, reason in fields.items())
        raise InvalidParams(f"invalid request ({summary})", fields) from exc


def run_payload(run_id: int) -> dict[str, Any]:
    """Everything known about one run, as the API answers it."""
    session = get_session()
    run = get_run(session, run_id)
    latest = latest_epochs(session, [run.id]).get(run.id)
    payload = run_to_dict(run, latest, queue_position(session, run))
    payload["evaluation"] = evaluation_to_dict(run.evaluation)
    return payload


@bp.post("/runs")
@require_token
def create() -> tuple[Response, int, dict[str, str]]:
    """Submit a run: 202 with the run and its Location."""
    body = validate(SubmitRequest, json_body())
    params = parse_params(body.params)
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > 200:
        raise BadRequest(
            "Idempotency-Key is too long", {"Idempotency-Key": "at most 200 characters"}
        )
    run, created = submit(
        current_app.extensions["trainyard.producer"], get_session(), params, body.name, key
    )
    location = url_for("api.show", run_id=run.id)
    headers = {"Location": location}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return jsonify(run_payload(run.id)), 202, headers


@bp.get("/runs")
def index() -> Response:
    """List runs with filters, sort and pages."""
    repeated = [key for key, values in request.args.lists() if len(values) > 1]
    if repeated:
        raise BadRequest(
            "a query parameter was given more than once", dict.fromkeys(repeated, "given twice")
        )
    query = parse_query(request.args.to_dict())
    session = get_session()
    page = list_runs(session, query)
    latest = latest_epochs(session, [run.id for run in page.runs])
    return jsonify(
        {
            "runs": [run_to_dict(run, latest.get(run.id)) for run in page.runs],
            "total": page.total,
            "page": page.page,
            "limit": page.limit,
            "pages": page.pages,
        }
    )


@bp.get("/runs/<int:run_id>")
def show(run_id: int) -> Response:
    """One run in full."""
    return jsonify(run_payload(run_id))


@bp.get("/runs/<int:run_id>/metrics")
def metrics(run_id: int) -> Response:
    """The run's per-epoch series."""
    session = get_session()
    get_run(session, run_id)
    return jsonify(
        {"run_id": run_id, "epochs": [epoch_to_dict(e) for e in epochs_of(session, run_id)]}
    )


@bp.post("/runs/<int:run_id>/cancel")
@require_token
def cancel(run_id: int) -> tuple[Response, int]:
    """Cancel a queued run, or ask a running one to stop; 409 once it has finished."""
    session = get_session()
    request_cancel(session, run_id)
    session.commit()
    return jsonify(run_payload(run_id)), 202
