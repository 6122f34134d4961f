"""The JSON API: runs and their history, the actions on them, the queue, workers and health.

Every view declares its contract with `@operation`; `web/openapi.py` builds the document from it.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, request, url_for

from shared.domain.errors import BadRequest
from shared.domain.filters import RunQuery
from shared.domain.params import PARAM_NAMES, Hyperparams
from shared.read import runs as run_views
from shared.read.compare import compare_runs
from shared.read.models import (
    CompareOut,
    HealthOut,
    MetricsOut,
    QueueOut,
    RunDetail,
    RunList,
    WorkersOut,
)
from shared.read.workers import workers as registered_workers
from shared.store.queries import get_run
from shared.store.runs import request_cancel
from web import parsing, security
from web.database import app_settings, app_store, dispatcher, get_session
from web.health import health as health_checks
from web.openapi import (
    ERRORS,
    KERAS_FILE,
    answer,
    build_document,
    inline_code,
    operation,
    type_label,
)
from web.schemas import (
    CloneRequest,
    CompareQuery,
    EmptyRequest,
    MetricsQuery,
    NoQuery,
    SubmitRequest,
    WorkersQuery,
)
from web.tables import csv_response, wants_csv

logger = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api")
EPOCH_COLUMNS = (
    "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "recorded_at", "attempt",
)  # fmt: skip
LIST_COLUMNS = (
    "id", "name", "tags", "status", "archived", "created_at", "finished_at", "epochs_done",
    "test_accuracy", "test_loss",
)  # fmt: skip
WRITE_ERRORS = {code: ERRORS[code] for code in (401, 403, 413, 415, 422)}


def _accepted(run_id: int, created: bool = True) -> tuple[Response, int, dict[str, str]]:
    headers = {"Location": url_for("api.show", run_id=run_id)}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return answer(run_views.run_detail(get_session(), run_id)), 202, headers


@bp.post("/runs")
@operation(
    "Submit a run",
    {202: RunDetail, 400: ERRORS[400], 409: ERRORS[409], 429: ERRORS[429], 503: ERRORS[503]}
    | WRITE_ERRORS,
    body=SubmitRequest,
    secured=True,
    headers={"Location": "The run's URL.", "Idempotent-Replayed": "`true` on a replay."},
    operation_id="submitRun",
    tag="runs",
)
def create() -> tuple[Response, int, dict[str, str]]:
    """Queue a training run: 202 with the run. A retry with the same Idempotency-Key returns the
    same run (409 if its body differs)."""
    body = parsing.body(SubmitRequest)
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > 200:
        raise BadRequest(
            "Idempotency-Key is too long", {"Idempotency-Key": "at most 200 characters"}
        )
    run, created = dispatcher().submit(get_session(), body.params, body.name, key)
    return _accepted(run.id, created)


@bp.get("/runs")
@operation(
    "List runs",
    {200: RunList, 400: ERRORS[400]},
    query=RunQuery,
    csv=True,
    operation_id="listRuns",
    tag="runs",
)
def index() -> Response:
    """Runs matching the filters, sorted, one page at a time (`next_cursor` leads on), with the
    total that matched; CSV of the page with `?format=csv` or `Accept: text/csv`."""
    query = parsing.query(RunQuery)
    listing = run_views.runs_page(get_session(), query, current_app.secret_key)
    if not wants_csv(query.format):
        return answer(listing)
    rows = listing.model_dump(mode="json")["runs"]
    cells = (
        [" ".join(row["tags"]) if c == "tags" else row[c] for c in LIST_COLUMNS]
        + [row["params"][name] for name in PARAM_NAMES]
        for row in rows
    )
    return csv_response([*LIST_COLUMNS, *PARAM_NAMES], cells, "runs.csv")


@bp.get("/runs/<int:run_id>")
@operation("Show a run", {200: RunDetail, 404: ERRORS[404]}, operation_id="getRun", tag="runs")
def show(run_id: int) -> Response:
    """Everything known about a run, with its evaluation once it succeeded."""
    return answer(run_views.run_detail(get_session(), run_id))


@bp.get("/runs/<int:run_id>/metrics")
@operation(
    "A run's per-epoch metrics",
    {200: MetricsOut, 400: ERRORS[400], 404: ERRORS[404]},
    query=MetricsQuery,
    csv=True,
    operation_id="getRunMetrics",
    tag="runs",
)
def metrics(run_id: int) -> Response:
    """The per-epoch series; CSV with `?format=csv` or `Accept: text/csv`."""
    query = parsing.query(MetricsQuery)
    series = run_views.run_epochs(get_session(), run_id)
    if not wants_csv(query.format):
        return answer(series)
    rows = series.model_dump(mode="json")["epochs"]
    cells = ([row[column] for column in EPOCH_COLUMNS] for row in rows)
    return csv_response(EPOCH_COLUMNS, cells, f"run-{run_id}-metrics.csv")


@bp.get("/runs/<int:run_id>/model")
@operation(
    "Download a run's trained model",
    {200: KERAS_FILE, 404: ERRORS[404], 409: ERRORS[409]},
    operation_id="getRunModel",
    tag="runs",
)
def model(run_id: int) -> Response:
    """The final model of a succeeded run as a `.keras` file: `keras.models.load_model` opens
    it, and it takes raw 28x28 pixels (0-255), its run's scaling built in."""
    return Response(
        run_views.trained_model(get_session(), run_id),
        mimetype="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="trainyard-run-{run_id}.keras"'},
    )


@bp.post("/runs/<int:run_id>/cancel")
@operation(
    "Cancel a run",
    {202: RunDetail, 400: ERRORS[400], 404: ERRORS[404], 409: ERRORS[409], **WRITE_ERRORS},
    body=EmptyRequest,
    secured=True,
    operation_id="cancelRun",
    tag="runs",
)
def cancel(run_id: int) -> tuple[Response, int]:
    """Cancel a queued run at once, or ask a running one to stop; 409 once it has finished."""
    parsing.body(EmptyRequest)
    session = get_session()
    request_cancel(session, run_id)
    session.commit()
    return answer(run_views.run_detail(session, run_id)), 202


@bp.post("/runs/<int:run_id>/clone")
@operation(
    "Clone a run",
    {202: RunDetail, 400: ERRORS[400], 404: ERRORS[404], 429: ERRORS[429], 503: ERRORS[503]}
    | WRITE_ERRORS,
    body=CloneRequest,
    secured=True,
    headers={"Location": "The new run's URL."},
    operation_id="cloneRun",
    tag="runs",
)
def clone(run_id: int) -> tuple[Response, int, dict[str, str]]:
    """Queue a new run with this run's hyperparameters and the given overrides; a new seed is
    drawn unless `params.seed` is given."""
    body = parsing.body(CloneRequest)
    session = get_session()
    source = get_run(session, run_id)
    merged = {**source.params, "seed": None, **body.params.model_dump(exclude_unset=True)}
    params = Hyperparams.model_validate(merged)
    name = body.name or f"clone of {source.name}"[:200]
    run, _ = dispatcher().submit(session, params, name)
    return _accepted(run.id)


@bp.get("/compare")
@operation(
    "Compare runs",
    {200: CompareOut, 400: ERRORS[400], 404: ERRORS[404]},
    query=CompareQuery,
    operation_id="compareRuns",
    tag="runs",
)
def compare() -> Response:
    """Runs side by side: hyperparameters with the differing ones named, final figures, deltas
    against the baseline, and per-epoch series."""
    query = parsing.query(CompareQuery)
    return answer(compare_runs(get_session(), query.compared, query.baseline))


@bp.get("/queue")
@operation("The queue", {200: QueueOut, 400: ERRORS[400]}, operation_id="getQueue", tag="cluster")
def queue() -> Response:
    """Queued runs, next to run first, each with its position."""
    parsing.query(NoQuery)
    return answer(run_views.queue(get_session()))


@bp.get("/workers")
@operation(
    "Workers",
    {200: WorkersOut, 400: ERRORS[400]},
    query=WorkersQuery,
    operation_id="listWorkers",
    tag="cluster",
)
def workers() -> Response:
    """Workers alive now (`all=1`: every registered one), with the runs each holds."""
    query = parsing.query(WorkersQuery)
    alive_within = app_settings().heartbeat_timeout
    return answer(registered_workers(get_session(), alive_within, query.all == "1"))


@bp.get("/health")
@operation(
    "Health",
    {200: HealthOut, 400: ERRORS[400], 503: HealthOut},
    operation_id="getHealth",
    tag="meta",
)
def health() -> tuple[Response, int]:
    """Database and broker reachable, schema at the latest revision: 200, else 503."""
    parsing.query(NoQuery)
    # The checks' details name hosts and users: only for callers that have the token.
    detailed = bool(app_settings().api_token) and security.signed_in()
    result = health_checks(app_store().engine, app_settings(), detailed)
    return answer(result), 200 if result.ok else 503


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
