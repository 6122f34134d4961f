"""The JSON API: runs and their history, the actions on them, the queue, workers and health.

Every view declares its contract with `@operation`; `web/openapi.py` builds the document from it.
"""

from __future__ import annotations

import csv
import io
import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, request, url_for
from pydantic import BaseModel, ConfigDict, ValidationError

from shared import db
from shared.compare import compare_runs
from shared.errors import BadRequest, InvalidParams, NotFound, UnsupportedMediaType
from shared.params import Hyperparams, field_errors
from shared.queries import RunQuery, list_runs, queued_runs
from shared.runs import (
    epochs_of,
    get_run,
    latest_epochs,
    queue_position,
    queue_positions,
    request_cancel,
)
from shared.serializers import epoch_to_dict, evaluation_to_dict, run_to_dict, worker_to_dict
from shared.workers import list_workers
from web.auth import require_token
from web.database import get_session
from web.health import health as health_checks
from web.openapi import ERRORS, build_document, inline_code, operation, type_label
from web.queue import submit
from web.schemas import (
    CloneRequest,
    CompareOut,
    CompareQuery,
    HealthOut,
    MetricsOut,
    MetricsQuery,
    QueueOut,
    RunDetail,
    RunList,
    SubmitRequest,
    WorkersOut,
    WorkersQuery,
)

logger = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api")
MAX_RUN_ID = 2**31 - 1
EPOCH_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "recorded_at")
INT_PARAMS = {
    name for name, info in Hyperparams.model_fields.items() if info.annotation in (int, int | None)
}
WRITE_ERRORS = {code: ERRORS[code] for code in (401, 413, 415, 422)}


class _NoQuery(BaseModel):
    """The query of an endpoint that takes no parameters: any key is a 400."""

    model_config = ConfigDict(extra="forbid")


@bp.url_value_preprocessor
def _check_run_id(endpoint: str | None, values: dict[str, Any] | None) -> None:
    # Ids no database column can hold are "no such run", before any query sees them.
    if values and "run_id" in values and not 1 <= values["run_id"] <= MAX_RUN_ID:
        raise NotFound(f"run {values['run_id']} does not exist", {"id": "no such run"})


def json_body() -> dict[str, Any]:
    """Return the request's JSON object ({} when there is no body), or raise 415 / 400."""
    if not request.get_data(cache=True) and not request.content_type:
        return {}
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


def _reasons(exc: ValidationError) -> dict[str, str]:
    fields = field_errors(exc)
    return {key: reason.removeprefix("Value error, ") for key, reason in fields.items()}


def _integral(params: dict[str, Any]) -> dict[str, Any]:
    """Read 3.0 as 3 for integer fields, as JSON Schema does (strict pydantic would refuse it)."""
    return {
        key: int(value)
        if key in INT_PARAMS and isinstance(value, float) and value.is_integer()
        else value
        for key, value in params.items()
    }


def validate(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """Validate a body strictly against `model`, raising 422 that names each bad field."""
    params = data.get("params")
    if isinstance(params, dict):
        data = {**data, "params": _integral(params)}
    try:
        # Strict: a JSON body has real types, so "3" for an int or 0 for a bool is a mistake.
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        fields = _reasons(exc)
        summary = "; ".join(f"{key}: {reason}" for key, reason in fields.items())
        raise InvalidParams(f"invalid request ({summary})", fields) from exc


def query_args(model: type[BaseModel]) -> Any:
    """Validate the query string against `model`; a repeated, unknown or bad key is a 400."""
    repeated = [key for key, values in request.args.lists() if len(values) > 1]
    if repeated:
        raise BadRequest(
            "a query parameter was given more than once", dict.fromkeys(repeated, "given twice")
        )
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        fields = {
            key: "unknown filter or parameter" if reason == "unknown field" else reason
            for key, reason in _reasons(exc).items()
        }
        summary = "; ".join(f"{key}: {reason}" for key, reason in fields.items())
        raise BadRequest(f"invalid query ({summary})", fields) from exc


def run_payload(run_id: int) -> dict[str, Any]:
    """Everything known about one run, as the API answers it."""
    session = get_session()
    run = get_run(session, run_id)
    latest = latest_epochs(session, [run.id]).get(run.id)
    payload = run_to_dict(run, latest, queue_position(session, run))
    payload["evaluation"] = evaluation_to_dict(run.evaluation)
    return payload


def _accepted(run_id: int, created: bool = True) -> tuple[Response, int, dict[str, str]]:
    headers = {"Location": url_for("api.show", run_id=run_id)}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return jsonify(run_payload(run_id)), 202, headers


@bp.post("/runs")
@operation(
    "Submit a run",
    {202: RunDetail, 400: ERRORS[400], 409: ERRORS[409], 503: ERRORS[503], **WRITE_ERRORS},
    body=SubmitRequest,
    secured=True,
    headers={"Location": "The run's URL.", "Idempotent-Replayed": "`true` on a replay."},
)
@require_token
def create() -> tuple[Response, int, dict[str, str]]:
    """Queue a training run: 202 with the run. A retry with the same Idempotency-Key returns the
    same run (409 if its body differs)."""
    body = validate(SubmitRequest, json_body())
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > 200:
        raise BadRequest(
            "Idempotency-Key is too long", {"Idempotency-Key": "at most 200 characters"}
        )
    run, created = submit(
        current_app.extensions["trainyard.producer"], get_session(), body.params, body.name, key
    )
    return _accepted(run.id, created)


@bp.get("/runs")
@operation("List runs", {200: RunList, 400: ERRORS[400]}, query=RunQuery)
def index() -> Response:
    """Runs matching the filters, sorted, one page at a time, with the total that matched."""
    query = query_args(RunQuery)
    session = get_session()
    page = list_runs(session, query)
    latest = latest_epochs(session, [run.id for run in page.runs])
    positions = queue_positions(session, page.runs)
    return jsonify(
        {
            "runs": [
                run_to_dict(run, latest.get(run.id), positions.get(run.id)) for run in page.runs
            ],
            "total": page.total,
            "page": page.page,
            "limit": page.limit,
            "pages": page.pages,
        }
    )


@bp.get("/runs/<int:run_id>")
@operation("Show a run", {200: RunDetail, 404: ERRORS[404]})
def show(run_id: int) -> Response:
    """Everything known about a run, with its evaluation once it succeeded."""
    return jsonify(run_payload(run_id))


@bp.get("/runs/<int:run_id>/metrics")
@operation(
    "A run's per-epoch metrics",
    {200: MetricsOut, 400: ERRORS[400], 404: ERRORS[404]},
    query=MetricsQuery,
    csv=True,
)
def metrics(run_id: int) -> Response:
    """The per-epoch series; CSV with `?format=csv` or `Accept: text/csv`."""
    query = query_args(MetricsQuery)
    session = get_session()
    get_run(session, run_id)
    rows = [epoch_to_dict(e) for e in epochs_of(session, run_id)]
    wants = query.format or (
        "csv"
        if request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv"
        else "json"
    )
    if wants == "json":
        return jsonify({"run_id": run_id, "epochs": rows})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EPOCH_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="run-{run_id}-metrics.csv"'},
    )


@bp.post("/runs/<int:run_id>/cancel")
@operation(
    "Cancel a run", {202: RunDetail, 401: ERRORS[401], 404: ERRORS[404], 409: ERRORS[409]},
    secured=True,
)  # fmt: skip
@require_token
def cancel(run_id: int) -> tuple[Response, int]:
    """Cancel a queued run at once, or ask a running one to stop; 409 once it has finished."""
    session = get_session()
    request_cancel(session, run_id)
    session.commit()
    return jsonify(run_payload(run_id)), 202


@bp.post("/runs/<int:run_id>/clone")
@operation(
    "Clone a run",
    {202: RunDetail, 400: ERRORS[400], 404: ERRORS[404], 503: ERRORS[503], **WRITE_ERRORS},
    body=CloneRequest,
    secured=True,
    headers={"Location": "The new run's URL."},
)
@require_token
def clone(run_id: int) -> tuple[Response, int, dict[str, str]]:
    """Queue a new run with this run's hyperparameters and the given overrides; a new seed is
    drawn unless `params.seed` is given."""
    body = validate(CloneRequest, json_body())
    session = get_session()
    source = get_run(session, run_id)
    merged = {**source.params, "seed": None, **body.params.model_dump(exclude_unset=True)}
    params = Hyperparams.model_validate(merged)
    name = body.name or f"clone of {source.name}"[:200]
    run, _ = submit(current_app.extensions["trainyard.producer"], session, params, name)
    return _accepted(run.id)


@bp.get("/compare")
@operation(
    "Compare runs", {200: CompareOut, 400: ERRORS[400], 404: ERRORS[404]}, query=CompareQuery
)
def compare() -> Response:
    """Runs side by side: hyperparameters with the differing ones named, final figures, deltas
    against the baseline, and per-epoch series."""
    query = query_args(CompareQuery)
    ids = query.ids
    if query.baseline is not None and query.baseline not in ids:
        ids = [query.baseline, *ids]
    return jsonify(compare_runs(get_session(), ids, query.baseline).to_dict())


@bp.get("/queue")
@operation("The queue", {200: QueueOut, 400: ERRORS[400]})
def queue() -> Response:
    """Queued runs, next to run first, each with its position."""
    query_args(_NoQuery)
    session = get_session()
    runs = queued_runs(session)
    latest = latest_epochs(session, [run.id for run in runs])
    rows = [
        {**run_to_dict(run, latest.get(run.id), place), "position": place}
        for place, run in enumerate(runs, start=1)
    ]
    return jsonify({"runs": rows, "total": len(rows)})


@bp.get("/workers")
@operation("Workers", {200: WorkersOut, 400: ERRORS[400]}, query=WorkersQuery)
def workers() -> Response:
    """Workers alive now (`all=1`: every registered one), with the runs each holds."""
    query = query_args(WorkersQuery)
    settings = current_app.config["TRAINYARD"]
    rows = list_workers(get_session(), settings.heartbeat_timeout, include_dead=query.all == "1")
    return jsonify({"workers": [worker_to_dict(*row) for row in rows]})


@bp.get("/health")
@operation("Health", {200: HealthOut, 400: ERRORS[400], 503: HealthOut})
def health() -> tuple[Response, int]:
    """Database and broker reachable, schema at the latest revision: 200, else 503."""
    query_args(_NoQuery)
    result = health_checks(db.get_engine(), current_app.config["TRAINYARD"])
    return jsonify(result), 200 if result["ok"] else 503


def _document() -> dict[str, Any]:
    document = current_app.extensions.get("trainyard.openapi")
    if document is None:
        document = current_app.extensions["trainyard.openapi"] = build_document(current_app)
    return document


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """The OpenAPI 3.1 document of this API."""
    return jsonify(_document())


@bp.get("/docs")
def docs() -> str:
    """The OpenAPI document, rendered for people."""
    return render_template(
        "api_docs.html", doc=_document(), type_label=type_label, inline_code=inline_code
    )
