"""The dashboard's history actions: rename, tag, annotate, archive and delete a run from its page,
and bulk actions from the runs page with a confirmation that says how many. Plain forms (POST
with a CSRF token); a little JavaScript is never needed."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

from flask import Blueprint, flash, redirect, render_template, request, url_for
from pydantic import ValidationError
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from shared.domain.errors import BadRequest, InvalidParams, TrainyardError, field_errors, summary
from shared.domain.filters import RunQuery
from shared.domain.history import BulkRequest, RunPatch
from shared.store import history
from shared.store.queries import count_matching, get_run
from web import parsing
from web.database import app_settings, get_session
from web.history_api import PAGING, selected_ids

bp = Blueprint("history_pages", __name__)
ACTIONS = {
    "tag": "Add tags to",
    "untag": "Remove tags from",
    "archive": "Archive",
    "unarchive": "Restore from the archive",
    "delete": "Delete",
}


def split_tags(text: str) -> list[str]:
    """Tags as typed in a form: separated by spaces or commas."""
    return [tag for tag in re.split(r"[\s,]+", text.strip()) if tag]


def _refusal_message(exc: ValidationError) -> str:
    return summary(field_errors(exc))


@bp.post("/runs/<int:run_id>/edit")
def edit(run_id: int) -> Response:
    """Rename, retag and annotate from the run page."""
    data: dict[str, Any] = {}
    for field in ("name", "note"):
        if field in request.form:
            data[field] = request.form[field].replace("\r\n", "\n")
    if "tags" in request.form:
        data["tags"] = split_tags(request.form["tags"])
    if "note" in data and not data["note"].strip():
        data["note"] = None
    try:
        changes = RunPatch.model_validate(data).changes()
    except ValidationError as exc:
        flash(f"Not saved: {_refusal_message(exc)}", "error")
        return redirect(url_for("pages.run", run_id=run_id), 303)
    session = get_session()
    history.update_run(session, run_id, changes)
    session.commit()
    flash("Saved.")
    return redirect(url_for("pages.run", run_id=run_id), 303)


@bp.post("/runs/<int:run_id>/archive")
def archive(run_id: int) -> Response:
    """Archive (archived=1) or restore (archived=0) from the run page."""
    archived = request.form.get("archived") == "1"
    session = get_session()
    history.update_run(session, run_id, {"archived": archived})
    session.commit()
    flash(f"Run {run_id} {'archived' if archived else 'restored'}.")
    return redirect(url_for("pages.run", run_id=run_id), 303)


@bp.route("/runs/<int:run_id>/delete", methods=["GET", "POST"])
def delete(run_id: int) -> str | Response:
    """Ask, then delete a run with everything it owns."""
    session = get_session()
    run = get_run(session, run_id)
    if request.method == "GET":
        return render_template("delete_run.html", run=run)
    try:
        history.delete_run(session, run_id)
    except TrainyardError as exc:
        flash(exc.message, "error")
        return redirect(url_for("pages.run", run_id=run_id), 303)
    session.commit()
    flash(f"Run {run_id} deleted.")
    return redirect(url_for("pages.runs"), 303)


def _selection(values: MultiDict[str, str]) -> dict[str, Any]:
    """The bulk selection a form names: ticked `ids`, or `filter` (the runs page's query)."""
    if values.get("filter") is not None:
        given = {k: v for k, v in parse_qsl(values["filter"]) if k not in PAGING and v}
        return {"filter": given}
    try:
        return {"ids": [int(value) for value in values.getlist("ids")]}
    except ValueError:
        raise BadRequest("ids must be run ids", {"ids": "not a number"}) from None


def _matching(selection: dict[str, Any]) -> int:
    """How many runs the selection holds (a filter's count stops past the bound)."""
    if "ids" in selection:
        return len(selection["ids"])
    query = parsing.query(RunQuery, MultiDict(selection["filter"]), from_form=True)
    return count_matching(get_session(), query, bound=app_settings().bulk_max).value


@bp.route("/runs/bulk", methods=["GET", "POST"])
def bulk() -> str | Response | tuple[str, int]:
    """GET: what the action would do and to how many runs, with the form that confirms it.
    POST: do it, then back to the runs page saying what happened."""
    values = request.values
    selection = _selection(values)
    action = values.get("action", "")
    back = url_for("pages.runs") + (
        "?" + urlencode(selection["filter"]) if selection.get("filter") else ""
    )
    if request.method == "GET":
        context = {
            "selection": selection,
            "filter_text": values.get("filter"),
            "action": action if action in ACTIONS else None,
            "actions": ACTIONS,
            "count": _matching(selection),
            "bound": app_settings().bulk_max,
            "back": back,
        }
        return render_template("bulk.html", **context), 200
    body = {**selection, "action": action, "tags": split_tags(values.get("tags", "")) or None}
    try:
        parsed = BulkRequest.model_validate(body)
    except ValidationError as exc:
        flash(f"Nothing done: {_refusal_message(exc)}", "error")
        return redirect(back, 303)
    problems = parsed.problems()
    if problems:
        flash(f"Nothing done: {summary(problems)}", "error")
        return redirect(back, 303)
    try:
        ids = selected_ids(parsed, app_settings().bulk_max)
    except (InvalidParams, TrainyardError) as exc:
        flash(f"Nothing done: {exc.message}", "error")
        return redirect(back, 303)
    session = get_session()
    affected, skipped = history.apply_bulk(session, ids, parsed.action, parsed.tags or [])
    session.commit()
    message = f"{ACTIONS[parsed.action]}: {affected} of {len(ids)} runs."
    if skipped:
        first = sorted(skipped.items())[:3]
        message += " Left: " + "; ".join(f"run {i} ({reason})" for i, reason in first)
        message += f" and {len(skipped) - 3} more." if len(skipped) > 3 else "."
    flash(message)
    return redirect(back, 303)
