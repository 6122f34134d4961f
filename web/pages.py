"""The dashboard's server-rendered pages."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from shared.errors import TrainyardError
from shared.queries import list_runs, parse_query
from shared.runs import epochs_of, get_run, latest_epochs, queue_position, request_cancel
from shared.serializers import epoch_to_dict, evaluation_to_dict, run_to_dict
from web.database import get_session
from web.forms import RunForm
from web.queue import submit

bp = Blueprint("pages", __name__)


@bp.get("/")
def home() -> Response:
    return redirect(url_for("pages.runs"))


@bp.get("/runs")
def runs() -> str:
    """Every run, newest first, a page at a time."""
    query = parse_query(request.args.to_dict())
    session = get_session()
    page = list_runs(session, query)
    latest = latest_epochs(session, [run.id for run in page.runs])
    rows = [run_to_dict(run, latest.get(run.id)) for run in page.runs]
    return render_template("runs.html", rows=rows, page=page, query=query)


@bp.route("/runs/new", methods=["GET", "POST"])
def new_run() -> str | Response:
    """The New run form; a valid submission queues the run and opens its page."""
    form = RunForm()
    if form.validate_on_submit():
        params = form.validate_params()
        if params is not None:
            session = get_session()
            run, _ = submit(
                current_app.extensions["trainyard.producer"], session, params, form.name.data
            )
            flash(f"Run {run.id} queued.")
            return redirect(url_for("pages.run", run_id=run.id))
    status = 422 if request.method == "POST" else 200
    return render_template("new.html", form=form), status  # type: ignore[return-value]


@bp.get("/runs/<int:run_id>")
def run(run_id: int) -> str:
    """One run: hyperparameters, epochs, curves, final figures."""
    session = get_session()
    record = get_run(session, run_id)
    latest = latest_epochs(session, [run_id]).get(run_id)
    return render_template(
        "run.html",
        run=run_to_dict(record, latest, queue_position(session, record)),
        epochs=[epoch_to_dict(e) for e in epochs_of(session, run_id)],
        evaluation=evaluation_to_dict(record.evaluation),
    )


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
