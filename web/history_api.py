"""The JSON API of a run's history: rename, tag, annotate, archive and delete runs, alone or in
bulk, and delete or archive a study with its runs."""

from __future__ import annotations

from flask import Blueprint, Response
from werkzeug.datastructures import MultiDict

from shared.domain.errors import BadRequest, InvalidParams, PayloadTooLarge
from shared.domain.filters import RunQuery
from shared.domain.history import BulkRequest, RunPatch, StudyPatch
from shared.read import runs as run_views
from shared.read.history import BulkOut, DeletedOut, bulk_out
from shared.read.models import RunDetail, StudyDetail
from shared.read.studies import summarize
from shared.store import history
from web import parsing
from web.database import app_settings, get_session
from web.openapi import ERRORS, answer, operation

bp = Blueprint("history_api", __name__, url_prefix="/api")
WRITES = {code: ERRORS[code] for code in (400, 401, 403, 404, 409, 413, 415, 422)}
# Query keys that choose a page, not runs: a bulk filter ignores them.
PAGING = ("sort", "page", "limit", "cursor", "format")


@bp.patch("/runs/<int:run_id>")
@operation(
    "Rename, tag, annotate or archive a run",
    {200: RunDetail, **WRITES},
    body=RunPatch,
    secured=True,
    operation_id="updateRun",
    tag="runs",
)
def update(run_id: int) -> Response:
    """Set any of `name`, `tags` (replacing them), `note` and `archived`; the rest stay."""
    body = parsing.body(RunPatch)
    session = get_session()
    history.update_run(session, run_id, body.changes())
    session.commit()
    return answer(run_views.run_detail(session, run_id))


@bp.delete("/runs/<int:run_id>")
@operation(
    "Delete a run",
    {200: DeletedOut, **WRITES},
    secured=True,
    operation_id="deleteRun",
    tag="runs",
)
def delete(run_id: int) -> Response:
    """Delete a finished run with its epochs, evaluation, checkpoint and model. A queued or
    running run is a 409 (cancel it first), and so is a study's replicate (delete the study)."""
    parsing.json_object()
    session = get_session()
    history.delete_run(session, run_id)
    session.commit()
    return answer(DeletedOut(runs=1))


def selected_ids(body: BulkRequest, bound: int) -> list[int]:
    """The ids a bulk request names, or its filter matches; 413 past `bound`."""
    if body.ids is not None:
        if len(body.ids) > bound:
            raise PayloadTooLarge(
                f"at most {bound} runs a request", {"ids": f"{len(body.ids)} given"}
            )
        return list(dict.fromkeys(body.ids))
    given = {key: value for key, value in (body.filter or {}).items() if key not in PAGING}
    try:
        query = parsing.query(RunQuery, MultiDict(given))
    except BadRequest as exc:
        fields = {f"filter.{key}": reason for key, reason in exc.fields.items()}
        raise InvalidParams.for_fields("invalid filter", fields) from exc
    ids = history.select_ids(get_session(), query, bound)
    if len(ids) > bound:
        raise PayloadTooLarge(
            f"the filter matches more than {bound} runs: narrow it, or send several requests",
            {"filter": f"matches more than {bound} runs"},
        )
    return ids


@bp.post("/runs/bulk")
@operation(
    "Tag, archive or delete many runs",
    {200: BulkOut, **WRITES},
    body=BulkRequest,
    secured=True,
    operation_id="bulkRuns",
    tag="runs",
)
def bulk() -> Response:
    """Do one action to the runs given by `ids` or matched by `filter` (GET /api/runs's query
    parameters), at most TRAINYARD_BULK_MAX (1000) of them: 413 beyond. Runs an action cannot
    apply to (a running run to delete, ...) are left and listed with the reason."""
    body = parsing.body(BulkRequest)
    problems = body.problems()
    if problems:
        raise InvalidParams.for_fields("invalid bulk request", problems)
    ids = selected_ids(body, app_settings().bulk_max)
    session = get_session()
    affected, skipped = history.apply_bulk(session, ids, body.action, body.tags or [])
    session.commit()
    return answer(bulk_out(body.action, len(ids), affected, skipped))


@bp.delete("/studies/<int:study_id>")
@operation(
    "Delete a study and its runs",
    {200: DeletedOut, **WRITES},
    secured=True,
    operation_id="deleteStudy",
    tag="studies",
)
def delete_study(study_id: int) -> Response:
    """Delete a study with every run it holds; 409 while any of them is queued or running."""
    parsing.json_object()
    session = get_session()
    runs = history.delete_study(session, study_id)
    session.commit()
    return answer(DeletedOut(runs=runs, study_id=study_id))


@bp.patch("/studies/<int:study_id>")
@operation(
    "Archive or restore a study",
    {200: StudyDetail, **WRITES},
    body=StudyPatch,
    secured=True,
    operation_id="updateStudy",
    tag="studies",
)
def update_study(study_id: int) -> Response:
    """`{"archived": true}` archives every run of the study (false restores them)."""
    body = parsing.body(StudyPatch)
    session = get_session()
    study = history.archive_study(session, study_id, body.archived)
    session.commit()
    return answer(summarize(session, study, None))
