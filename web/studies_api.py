"""The JSON API of studies: submit one, follow it, compare its configurations, add replicates."""

from __future__ import annotations

from flask import Blueprint, Response, request, url_for

from shared.domain.study_design import StudyRequest
from shared.read.models import StudyDetail, StudyList, StudyRuns
from shared.read.studies import run_table, study_list, summarize
from shared.store.studies import cancel_study, get_study
from web import parsing
from web.database import dispatcher, get_session
from web.openapi import ERRORS, answer, operation
from web.schemas import (
    EmptyRequest,
    ReplicatesRequest,
    StudyListQuery,
    StudyQuery,
    StudyRunsQuery,
)
from web.tables import csv_response, wants_csv

bp = Blueprint("studies_api", __name__, url_prefix="/api/studies")
WRITES = {code: ERRORS[code] for code in (400, 401, 403, 413, 415, 422, 429, 503)}
NOT_FOUND = "No such study (or, for `baseline`, no such configuration)."
RUN_COLUMNS = (
    "run_id", "tags", "config", "label", "seed", "status", "epochs_done", "test_accuracy", "test_loss",
    "duration_seconds",
)  # fmt: skip


def _detail(study_id: int) -> Response:
    baseline = parsing.query(StudyQuery).baseline if request.method == "GET" else None
    return answer(summarize(get_session(), get_study(get_session(), study_id), baseline))


@bp.post("")
@operation(
    "Submit a study",
    {202: StudyDetail, **WRITES},
    body=StudyRequest,
    secured=True,
    headers={"Location": "The study's URL."},
    operation_id="submitStudy",
    tag="studies",
)
def create() -> tuple[Response, int, dict[str, str]]:
    """Queue a study: every combination of `grid` (or `sample.n` random draws from its ranges)
    over the base `params`, times `seeds` replicates. Each run is checked like a submitted run;
    422 names the configuration and field that is not valid, or a total over the limit."""
    body = parsing.body(StudyRequest)
    study = dispatcher().submit_study(get_session(), body)
    location = url_for("studies_api.show", study_id=study.id)
    return _detail(study.id), 202, {"Location": location}


@bp.get("")
@operation(
    "List studies",
    {200: StudyList, 400: ERRORS[400]},
    query=StudyListQuery,
    operation_id="listStudies",
    tag="studies",
)
def index() -> Response:
    """Studies, newest first, with how far their runs are."""
    query = parsing.query(StudyListQuery)
    return answer(study_list(get_session(), query.page, query.limit))


@bp.get("/<int:study_id>")
@operation(
    "Show a study",
    {200: StudyDetail, 400: ERRORS[400], 404: NOT_FOUND},
    query=StudyQuery,
    operation_id="getStudy",
    tag="studies",
)
def show(study_id: int) -> Response:
    """Per configuration: its runs, the mean, standard deviation and 95% interval of the test
    accuracy and loss of its succeeded runs, and mean learning curves; then each configuration
    against the baseline (`?baseline=`, default the first) by Welch's unequal-variance t-test:
    the difference of means, its 95% interval and the p-value, with a verdict in words."""
    return _detail(study_id)


@bp.post("/<int:study_id>/cancel")
@operation(
    "Cancel a study",
    {202: StudyDetail, 404: NOT_FOUND, **WRITES},
    body=EmptyRequest,
    secured=True,
    operation_id="cancelStudy",
    tag="studies",
)
def cancel(study_id: int) -> tuple[Response, int]:
    """Cancel every run of the study that has not finished (finished ones keep their figures)."""
    parsing.body(EmptyRequest)
    session = get_session()
    cancel_study(session, get_study(session, study_id))
    session.commit()
    return _detail(study_id), 202


@bp.post("/<int:study_id>/replicates")
@operation(
    "Add replicates to a study",
    {
        202: StudyDetail,
        404: NOT_FOUND,
        409: "More runs would take the study over its limit.",
        **WRITES,
    },
    body=ReplicatesRequest,
    secured=True,
    operation_id="addStudyReplicates",
    tag="studies",
)
def replicates(study_id: int) -> tuple[Response, int]:
    """Queue `seeds` more replicates of every configuration (new seeds, following the last
    ones): the way to narrow an interval that is too wide."""
    body = parsing.body(ReplicatesRequest)
    session = get_session()
    dispatcher().add_replicates(session, get_study(session, study_id), body.seeds)
    return _detail(study_id), 202


@bp.get("/<int:study_id>/runs")
@operation(
    "A study's runs",
    {200: StudyRuns, 400: ERRORS[400], 404: NOT_FOUND},
    query=StudyRunsQuery,
    csv=True,
    operation_id="getStudyRuns",
    tag="studies",
)
def runs(study_id: int) -> Response:
    """One row per run: configuration, its varied values, seed, status and figures. CSV with
    `?format=csv` or `Accept: text/csv` (one column per varied hyperparameter)."""
    query = parsing.query(StudyRunsQuery)
    session = get_session()
    study = get_study(session, study_id)
    study_runs = run_table(session, study)
    if not wants_csv(query.format):
        return answer(study_runs)
    rows = study_runs.model_dump(mode="json")["runs"]
    cells = (
        [" ".join(row[c]) if c == "tags" else row[c] for c in RUN_COLUMNS]
        + [row["params"][n] for n in study.varied]
        for row in rows
    )
    return csv_response([*RUN_COLUMNS, *study.varied], cells, f"study-{study_id}-runs.csv")
