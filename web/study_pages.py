"""The dashboard's study pages: the list, the New study form (with the normalization preset), and
a study's page with live progress, its statistics, curves and verdicts."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from pydantic import ValidationError
from werkzeug.wrappers import Response

from shared.domain.errors import InvalidParams, TooManyRequests, TrainyardError, field_errors
from shared.domain.params import PARAM_NAMES, Hyperparams
from shared.domain.search import CATEGORICAL
from shared.domain.study_design import VARIABLE, StudyRequest
from shared.read.studies import study_list, summarize
from shared.store.studies import cancel_study, get_study
from web import parsing
from web.database import dispatcher, get_session
from web.schemas import StudyListQuery, StudyQuery
from web.search_charts import search_charts

bp = Blueprint("study_pages", __name__)

# One click reproduces the quickstart's table with replicates.
PRESETS: dict[str, dict[str, Any]] = {
    "normalization": {
        "name": "Normalization study",
        "mode": "grid",
        "seeds": "4",
        "values": {"normalize": "true, false"},
    }
}


def _value(text: str) -> Any:
    """A value typed into the form: JSON when it parses (0.01, true, 128), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def search_form(form: dict[str, str], axes: dict[str, list[Any]]) -> dict[str, Any]:
    """The form's search: "low, high" (", log" for a log scale) makes a range, other lists the
    choices; trials, sampler, pruner and seed from their fields."""
    space: dict[str, Any] = {}
    for name, values in axes.items():
        log = values[-1:] == ["log"]
        bounds = values[:-1] if log else values
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in bounds)
        if name not in CATEGORICAL and numbers and len(bounds) == 2:
            space[name] = {"low": bounds[0], "high": bounds[1], "log": log}
        else:
            space[name] = {"choices": values}
    spec: dict[str, Any] = {
        "space": space,
        "trials": int(form.get("trials") or 24),
        "sampler": form.get("sampler") or "tpe",
        "pruner": form.get("pruner") or "asha",
    }
    if form.get("search_seed", "").strip():
        spec["seed"] = int(form["search_seed"])
    return spec


def study_request(form: dict[str, str]) -> StudyRequest:
    """The form's fields as a study request; 422 naming each field that is wrong."""
    base = {
        name: _value(form[f"base_{name}"].strip())
        for name in PARAM_NAMES
        if form.get(f"base_{name}", "").strip()
    }
    axes = {
        name: [_value(part.strip()) for part in form[f"vary_{name}"].split(",") if part.strip()]
        for name in VARIABLE
        if form.get(f"vary_{name}", "").strip()
    }
    data: dict[str, Any] = {"name": form.get("name") or None, "params": base}
    try:
        data["seeds"] = int(form.get("seeds") or 3)
        if form.get("mode") == "search":
            data["search"] = search_form(form, axes)
        elif form.get("mode") == "sample":
            sample_seed = form.get("sample_seed", "").strip()
            data["sample"] = {
                "n": int(form.get("sample_n") or 8),
                "ranges": axes,
                "seed": int(sample_seed) if sample_seed else None,
            }
        elif axes:
            data["grid"] = axes
    except ValueError:
        raise InvalidParams(
            "seeds, sample sizes and trials are whole numbers", {"seeds": "not a number"}
        ) from None
    try:
        request_ = StudyRequest.model_validate(data)
    except ValidationError as exc:
        raise InvalidParams.for_fields("invalid study", field_errors(exc)) from exc
    return request_


@bp.get("/studies")
def studies() -> str:
    """Studies, newest first, and how far their runs are."""
    query = parsing.query(StudyListQuery, from_form=True)
    listing = study_list(get_session(), query.page, query.limit).model_dump(mode="json")
    return render_template("studies.html", studies=listing["studies"], total=listing["total"])


@bp.route("/studies/new", methods=["GET", "POST"])
def new_study() -> str | Response | tuple[str, int]:
    """The New study form: base hyperparameters, the values to vary, seeds."""
    form = dict(request.form) if request.method == "POST" else {}
    preset = PRESETS.get(request.args.get("preset", ""))
    if preset and request.method == "GET":
        form = {"name": preset["name"], "mode": preset["mode"], "seeds": preset["seeds"]}
        form |= {f"vary_{name}": text for name, text in preset["values"].items()}
    error = None
    if request.method == "POST":
        try:
            study = dispatcher().submit_study(get_session(), study_request(form))
        except (InvalidParams, TooManyRequests) as exc:
            error = exc
        else:
            flash(f"Study {study.id} queued: {study.name}.", "queued")
            return redirect(url_for("study_pages.study", study_id=study.id))
    context = {
        "form": form,
        "error": error,
        "fields": Hyperparams.model_fields,
        "variable": VARIABLE,
        "presets": PRESETS,
    }
    return render_template("study_new.html", **context), error.status if error else 200


@bp.get("/studies/<int:study_id>")
def study(study_id: int) -> str:
    """A study: progress, each configuration's figures and curves, and the verdicts."""
    baseline = parsing.query(StudyQuery, from_form=True).baseline
    summary = summarize(get_session(), get_study(get_session(), study_id), baseline)
    return render_template(
        "study.html", study=summary.model_dump(mode="json"), charts=search_charts(summary.search)
    )


@bp.get("/studies/<int:study_id>/summary")
def study_summary(study_id: int) -> str:
    """The study page's tables alone, which the page fetches as runs finish."""
    baseline = parsing.query(StudyQuery, from_form=True).baseline
    summary = summarize(get_session(), get_study(get_session(), study_id), baseline)
    return render_template(
        "_study_summary.html",
        study=summary.model_dump(mode="json"),
        charts=search_charts(summary.search),
    )


@bp.post("/studies/<int:study_id>/replicates")
def add_replicates(study_id: int) -> Response:
    """Add replicates to every configuration (a plain form post)."""
    session = get_session()
    try:
        seeds = int(request.form.get("seeds", "0"))
        if not 1 <= seeds <= 20:
            raise ValueError
        runs = dispatcher().add_replicates(session, get_study(session, study_id), seeds)
        flash(f"{len(runs)} more runs queued: {seeds} more seed(s) for each configuration.")
    except ValueError:
        flash("Add 1 to 20 seeds at a time.")
    except TrainyardError as exc:
        flash(exc.message)
    return redirect(url_for("study_pages.study", study_id=study_id))


@bp.post("/studies/<int:study_id>/cancel")
def cancel(study_id: int) -> Response:
    """Cancel the study's unfinished runs (a plain form post)."""
    session = get_session()
    count = cancel_study(session, get_study(session, study_id))
    session.commit()
    flash(f"Study {study_id}: {count} unfinished run(s) cancelled.")
    return redirect(url_for("study_pages.study", study_id=study_id))
