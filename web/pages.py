"""The dashboard's server-rendered pages; a little JavaScript enhances them, none is required."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from shared.domain.errors import BadRequest, InvalidParams, TooManyRequests, TrainyardError
from shared.domain.filters import NUMERIC_PARAMS, SORT_FIELDS, RunQuery
from shared.domain.params import PARAM_NAMES
from shared.domain.status import RunStatus
from shared.read import runs as run_views
from shared.read.compare import compare_runs
from shared.read.workers import workers as registered_workers
from shared.store.queries import get_run
from shared.store.runs import request_cancel
from web import parsing, security
from web.database import app_settings, dispatcher, get_session
from web.digits import digit_data_uri
from web.forms import RunForm, clone_data
from web.history_api import PAGING
from web.schemas import ComparePageQuery, NewRunQuery

logger = logging.getLogger(__name__)

bp = Blueprint("pages", __name__)

# Compared runs take colours c0, c1, ... in order (app.css defines them; the charts read them).
COLOURS = 20
STATUSES = [status.value for status in RunStatus]
# Hyperparameters the runs page offers as min/max ranges (the seed is filtered by value only).
RANGE_PARAMS = [name for name in NUMERIC_PARAMS if name != "seed"]


@bp.app_template_filter("param")
def format_param(value: Any) -> str:
    """Show a hyperparameter as a researcher writes it: booleans as yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


@bp.get("/")
def home() -> Response:
    return redirect(url_for("pages.runs"))


@bp.get("/favicon.ico")
def favicon() -> Response:
    """The site's icon (browsers ask for it on every page)."""
    return current_app.send_static_file("favicon.svg")


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response | tuple[str, int]:
    """Sign in with the token; the session then opens every dashboard write."""
    target = security.safe_next(request.values.get("next"))
    if not app_settings().api_token:
        return redirect(target)
    failed = False
    if request.method == "POST":
        if security.sign_in(request.form.get("token", "")):
            return redirect(target, 303)
        failed = True
    context = {"next": target, "failed": failed, "private": app_settings().private}
    return render_template("login.html", **context), 401 if failed else 200


@bp.post("/logout")
def logout() -> Response:
    security.sign_out()
    flash("Signed out.")
    return redirect(url_for("pages.runs"), 303)


@bp.get("/runs")
def runs() -> tuple[str, int]:
    """Runs filtered, sorted and paged by the query string; a bad filter shows its reason."""
    args = parsing.flat_args(request.args, from_form=True)  # the filter form shows what was asked
    context: dict[str, Any] = {
        "args": args,
        "statuses": STATUSES,
        "range_params": RANGE_PARAMS,
        "sort_fields": SORT_FIELDS,
        "error": None,
        "ranges_open": "seed" in args
        or any(f"{name}_{end}" in args for name in RANGE_PARAMS for end in ("min", "max")),
        "rows": [],
        "page": None,
    }
    try:
        query = parsing.query(RunQuery, from_form=True)
    except BadRequest as exc:
        context["error"] = exc
        return render_template("runs.html", **context), 400
    listing = run_views.runs_page(get_session(), query, current_app.secret_key).model_dump(
        mode="json"
    )
    context["page"], context["rows"] = listing, listing["runs"]
    # The page's filter, for "act on every run matching the filter" (web/history_pages.py).
    context["filter_text"] = urlencode({k: v for k, v in args.items() if k not in PAGING})
    context["sort"] = query.sort
    return render_template("runs.html", **context), 200


@bp.get("/runs/rows")
def runs_rows() -> tuple[str, int]:
    """The runs table's rows alone, for the same query: the page fetches them when the runs it
    should show change (new ones queued elsewhere, finished ones moving on)."""
    try:
        query = parsing.query(RunQuery, from_form=True)
    except BadRequest as exc:
        return render_template("_runs_rows.html", rows=[], error=exc, args={}), 400
    rows = run_views.runs_page(get_session(), query, current_app.secret_key).model_dump(
        mode="json"
    )["runs"]
    args = parsing.flat_args(request.args, from_form=True)
    return render_template("_runs_rows.html", rows=rows, error=None, args=args), 200


@bp.route("/runs/new", methods=["GET", "POST"])
def new_run() -> str | Response | tuple[str, int]:
    """The New run form (pre-filled from `?clone=<id>`); a valid post queues the run."""
    source = parsing.query(NewRunQuery, from_form=True).clone
    cloned = (
        clone_data(get_run(get_session(), source)) if source and request.method == "GET" else None
    )
    form = RunForm(data=cloned) if cloned else RunForm()
    refused = None
    if form.validate_on_submit():
        params = form.validate_params()
        if params is not None:
            try:
                run, _ = dispatcher().submit(get_session(), params, form.name.data)
            except (InvalidParams, TooManyRequests) as exc:  # too costly, or the queue is full
                refused = exc
            else:
                flash(f"Run {run.id} queued.", "queued")
                return redirect(url_for("pages.run", run_id=run.id))
    status = refused.status if refused else 422 if request.method == "POST" else 200
    return render_template("new.html", form=form, cloned=source, refused=refused), status


def evaluation_view(evaluation: dict[str, Any] | None) -> dict[str, Any] | None:
    """Shape a run's evaluation for the heatmap and the digit grid."""
    if evaluation is None:
        return None
    matrix = evaluation["confusion_matrix"]
    rows = []
    for true_label, counts in enumerate(matrix):
        total = sum(counts) or 1
        rows.append(
            {
                "label": true_label,
                "total": sum(counts),
                "accuracy": evaluation["per_class_accuracy"][true_label],
                "cells": [
                    {"count": count, "share": count / total, "diagonal": true_label == predicted}
                    for predicted, count in enumerate(counts)
                ],
            }
        )
    digits = [
        {**{k: v for k, v in item.items() if k != "image"}, "src": digit_data_uri(item["image"])}
        for item in evaluation["misclassified"]
    ]
    return {
        "rows": rows,
        "total": sum(sum(counts) for counts in matrix),
        "correct": sum(matrix[i][i] for i in range(len(matrix))),
        "digits": digits,
    }


@bp.get("/runs/<int:run_id>")
def run(run_id: int) -> str:
    """One run: live progress, hyperparameters, curves, epochs, evaluation."""
    session = get_session()
    detail = run_views.run_detail(session, run_id).model_dump(mode="json")
    return render_template(
        "run.html",
        run=detail,
        epochs=run_views.run_epochs(session, run_id).model_dump(mode="json")["epochs"],
        evaluation=evaluation_view(detail.pop("evaluation")),
    )


@bp.get("/runs/<int:run_id>/evaluation")
def run_evaluation(run_id: int) -> str:
    """The evaluation section alone, which the run page fetches when a run finishes."""
    evaluation = run_views.run_detail(get_session(), run_id).model_dump(mode="json")["evaluation"]
    return render_template("_evaluation.html", evaluation=evaluation_view(evaluation))


@bp.post("/runs/<int:run_id>/cancel")
def cancel(run_id: int) -> Response:
    """Cancel from the run page (a plain form post)."""
    session = get_session()
    try:
        request_cancel(session, run_id)
        session.commit()
        flash(f"Run {run_id}: cancel requested.")
    except TrainyardError as exc:
        flash(exc.message)
    return redirect(url_for("pages.run", run_id=run_id))


@bp.get("/compare")
def compare() -> str:
    """Runs side by side: differing hyperparameters, final figures with deltas, curves."""
    query = parsing.query(ComparePageQuery, from_form=True)
    ids = query.compared
    comparison = compare_runs(get_session(), ids, query.baseline).model_dump(mode="json")
    show_all = query.all == "1"
    params = [
        {
            "name": name,
            "cells": [run["params"][name] for run in comparison["runs"]],
            "differs": name in comparison["differing_params"],
        }
        for name in PARAM_NAMES
    ]
    per_class = []
    for digit in range(10):
        values = [
            run["per_class_accuracy"][digit] if run["per_class_accuracy"] else None
            for run in comparison["runs"]
        ]
        known = [v for v in values if v is not None]
        per_class.append(
            {
                "digit": digit,
                "cells": values,
                "best": max(known, default=None),
                "known": len(known),
            }
        )
    colours = {run["id"]: i % COLOURS for i, run in enumerate(comparison["runs"])}
    chart_data = {
        "runs": [{"id": run["id"], "name": run["name"]} for run in comparison["runs"]],
        "epochs": comparison["epochs"],
        "baseline": comparison["baseline"],
    }
    return render_template(
        "compare.html",
        comparison=comparison,
        params=params,
        per_class=per_class,
        colours=colours,
        show_all=show_all,
        ids_arg=",".join(str(i) for i in ids),
        chart_data=chart_data,
    )


@bp.get("/workers")
def workers() -> str:
    """Registered workers, whether each is alive, and the runs it holds."""
    alive_within = app_settings().heartbeat_timeout
    rows = registered_workers(get_session(), alive_within, include_dead=True)
    return render_template("workers.html", workers=rows.model_dump(mode="json")["workers"])
