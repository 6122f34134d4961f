"""Studies through the API and the pages, on the real database and broker (no worker: the runs'
figures are written the way a worker writes them)."""

from __future__ import annotations

import csv
import io
import statistics

import pytest
from flask import Flask
from flask.testing import FlaskClient
from scipy import stats as scipy_stats
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.domain.status import RunStatus
from shared.store.lease import claim, finish, record_epoch
from shared.store.models import Run, Study
from tests.builders import epoch_record
from tests.support.app import client_for
from tests.support.machine import queued_messages
from tests.support.pages import csrf_token, find

NORMALIZATION = {"name": "norm", "grid": {"normalize": [True, False]}, "seeds": 3}


def train(session: Session, accuracies: dict[int, float], failed: set[int] = frozenset()) -> None:
    """Finish the study's runs as a worker would: two epochs, then the given test accuracy."""
    for run_id, accuracy in accuracies.items():
        lease = claim(session, run_id, "w@test", pid=1, seconds=60)
        assert lease is not None
        for epoch in (1, 2):
            record_epoch(session, lease, epoch_record(epoch))
        if run_id in failed:
            finish(session, lease, RunStatus.FAILED, error="boom")
        else:
            finish(
                session, lease, RunStatus.SUCCEEDED, test_accuracy=accuracy, test_loss=1 - accuracy
            )
    session.commit()


def test_a_study_queues_its_runs_with_one_message_each(
    api: FlaskClient, idle: Settings, session: Session
) -> None:
    answer = api.post("/api/studies", json=NORMALIZATION)
    assert answer.status_code == 202 and answer.headers["Location"].startswith("/api/studies/")
    study = answer.get_json()
    assert (study["status"], study["configs"], study["replicates"], study["runs"]) == (
        "queued",
        2,
        3,
        6,
    )
    runs = list(session.scalars(select(Run).order_by(Run.id)))
    assert [(r.config, r.normalize) for r in runs] == [(0, True)] * 3 + [(1, False)] * 3
    seeds = [r.seed for r in runs]
    assert seeds[:3] == seeds[3:] == [seeds[0], seeds[0] + 1, seeds[0] + 2]
    assert all(r.study_id == study["id"] for r in runs) and queued_messages(idle) == 6
    listed = api.get(f"/api/runs?study_id={study['id']}").get_json()
    assert listed["total"] == 6 and listed["runs"][0]["study_id"] == study["id"]


def test_the_summary_matches_statistics_computed_from_the_runs(
    api: FlaskClient, session: Session
) -> None:
    study_id = api.post("/api/studies", json=NORMALIZATION).get_json()["id"]
    runs = list(session.scalars(select(Run).where(Run.study_id == study_id).order_by(Run.id)))
    figures = dict(
        zip([r.id for r in runs], [0.977, 0.979, 0.976, 0.931, 0.936, 0.929], strict=True)
    )
    train(session, figures)
    summary = api.get(f"/api/studies/{study_id}").get_json()
    assert summary["status"] == "finished"
    normalized, raw = list(figures.values())[:3], list(figures.values())[3:]
    for config, values in zip(summary["configurations"], (normalized, raw), strict=True):
        accuracy = config["test_accuracy"]
        assert config["n"] == 3
        assert accuracy["mean"] == pytest.approx(statistics.mean(values))
        assert accuracy["std"] == pytest.approx(statistics.stdev(values))
        low, high = scipy_stats.t.interval(
            0.95, 2, loc=statistics.mean(values), scale=scipy_stats.sem(values)
        )
        assert accuracy["ci95"] == pytest.approx([low, high])
        assert [p["epoch"] for p in config["curves"]["loss"]] == [1, 2]
    comparison = next(c for c in summary["comparisons"] if c["metric"] == "test_accuracy")
    independent = scipy_stats.ttest_ind(raw, normalized, equal_var=False)
    assert comparison["p_value"] == pytest.approx(independent.pvalue)
    assert comparison["ci95"] == pytest.approx(list(independent.confidence_interval(0.95)))
    assert comparison["verdict"].startswith("raw pixels: test accuracy -4.5 points, 95% CI")
    assert "Welch" in summary["test"]
    # Against the other baseline, the difference turns around.
    turned = api.get(f"/api/studies/{study_id}?baseline=1").get_json()["comparisons"][0]
    assert turned["difference"] == pytest.approx(-comparison["difference"])
    assert api.get(f"/api/studies/{study_id}?baseline=2").status_code == 404


def test_failed_runs_are_counted_but_not_averaged(api: FlaskClient, session: Session) -> None:
    study_id = api.post("/api/studies", json=NORMALIZATION).get_json()["id"]
    ids = [
        r.id for r in session.scalars(select(Run).where(Run.study_id == study_id).order_by(Run.id))
    ]
    train(session, dict.fromkeys(ids, 0.95), failed={ids[0]})
    first = api.get(f"/api/studies/{study_id}").get_json()["configurations"][0]
    assert (first["runs"], first["n"]) == (3, 2)


def test_cancel_replicates_and_the_csv(api: FlaskClient, idle: Settings, session: Session) -> None:
    study_id = api.post("/api/studies", json={**NORMALIZATION, "name": "=cmd()"}).get_json()["id"]
    more = api.post(f"/api/studies/{study_id}/replicates", json={"seeds": 2})
    assert more.status_code == 202 and more.get_json()["replicates"] == 5
    assert more.get_json()["runs"] == 10 and queued_messages(idle) == 10
    seeds = sorted({r.seed for r in session.scalars(select(Run).where(Run.study_id == study_id))})
    assert seeds == list(range(seeds[0], seeds[0] + 5))
    table = api.get(f"/api/studies/{study_id}/runs?format=csv")
    rows = list(csv.DictReader(io.StringIO(table.get_data(as_text=True))))
    assert len(rows) == 10 and {r["normalize"] for r in rows} == {"True", "False"}
    assert rows[0]["label"] == "normalized pixels"
    cancelled = api.post(f"/api/studies/{study_id}/cancel", json={})
    assert cancelled.status_code == 202 and cancelled.get_json()["status"] == "cancelled"
    assert api.get("/api/studies").get_json()["studies"][0]["name"] == "=cmd()"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"grid": {"learning_rate": [0.01, 5]}}, 422, "grid.learning_rate"),
        ({"grid": {"colour": [1]}}, 422, "grid"),
        ({"grid": {"epochs": list(range(1, 21)), "dropout": [0, 0.1]}, "seeds": 10}, 422, "seeds"),
        (
            {"grid": {"hidden_units": [4096]}, "params": {"batch_size": 1, "epochs": 100}},
            422,
            "params",
        ),
        ({"seeds": "3"}, 422, "seeds"),
        ({"name": "bad\x1b"}, 422, "name"),
    ],
)
def test_bad_studies_are_refused_and_queue_nothing(
    api: FlaskClient,
    idle: Settings,
    session: Session,
    body: dict[str, object],
    status: int,
    field: str,
) -> None:
    answer = api.post("/api/studies", json=body)
    assert answer.status_code == status, answer.get_json()
    assert any(key.startswith(field) for key in answer.get_json()["error"]["fields"])
    assert session.scalars(select(Study)).all() == [] and queued_messages(idle) == 0


def test_a_study_beyond_the_queue_room_is_429(idle: Settings, session: Session) -> None:
    client = client_for(idle.with_overrides(max_queued_runs=5))
    answer = client.post("/api/studies", json=NORMALIZATION)
    assert answer.status_code == 429 and "Retry-After" in answer.headers
    assert session.scalars(select(Run)).all() == []


def test_missing_studies_are_404(api: FlaskClient) -> None:
    for path in ("/api/studies/9", "/api/studies/9/runs", "/api/studies/99999999999999999999"):
        assert api.get(path).status_code == 404, path
    assert api.post("/api/studies/9/cancel", json={}).status_code == 404


# The pages.


def test_the_normalization_preset_queues_the_tutorials_table_with_replicates(
    csrf_app: Flask, idle: Settings, session: Session
) -> None:
    client = csrf_app.test_client()
    form = client.get("/studies/new?preset=normalization").get_data(as_text=True)
    assert find(form, "input", name="vary_normalize")[0]["attrs"]["value"] == "true, false"
    assert find(form, "input", name="seeds")[0]["attrs"]["value"] == "4"
    data = {
        f["attrs"]["name"]: f["attrs"].get("value", "")
        for f in find(form, "input")
        if "name" in f["attrs"]
    }
    data["mode"] = "grid"
    answer = client.post("/studies/new", data=data)
    assert answer.status_code == 302
    study = session.scalars(select(Study)).one()
    assert (study.name, study.varied, study.replicates, len(study.configs)) == (
        "Normalization study",
        ["normalize"],
        4,
        2,
    )
    assert queued_messages(idle) == 8 and study.base_params == {}


def test_the_study_page_shows_figures_verdicts_and_adds_replicates(
    csrf_app: Flask, api: FlaskClient, idle: Settings, session: Session
) -> None:
    study_id = api.post("/api/studies", json=NORMALIZATION).get_json()["id"]
    ids = [
        r.id for r in session.scalars(select(Run).where(Run.study_id == study_id).order_by(Run.id))
    ]
    train(session, dict(zip(ids, [0.977, 0.979, 0.976, 0.931, 0.936, 0.929], strict=True)))
    client = csrf_app.test_client()
    page = client.get(f"/studies/{study_id}").get_data(as_text=True)
    verdicts = [cell["text"] for cell in find(page, "td", **{"class": "verdict"})]
    assert verdicts[0].startswith("raw pixels: test accuracy -4.5 points")
    assert len(find(page, "tr", **{"data-config": "0"})) == 1
    token = csrf_token(client, f"/studies/{study_id}")
    answer = client.post(
        f"/studies/{study_id}/replicates", data={"csrf_token": token, "seeds": "2"}
    )
    assert answer.status_code == 302
    assert session.get(Study, study_id).replicates == 5 and queued_messages(idle) == 6 + 4
    assert client.get("/studies").status_code == 200


def test_the_form_explains_a_bad_study_beside_it(csrf_app: Flask, session: Session) -> None:
    client = csrf_app.test_client()
    answer = client.post(
        "/studies/new",
        data={"csrf_token": csrf_token(client, "/studies/new"), "mode": "grid", "seeds": "2",
              "vary_learning_rate": "0.01, 7"},
    )  # fmt: skip
    assert answer.status_code == 422
    box = find(answer.get_data(as_text=True), "div", id="study-error")[0]["text"]
    assert "learning_rate=7" in box
    assert session.scalars(select(Study)).all() == []
