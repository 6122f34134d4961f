"""A run's history: rename, tag, annotate, archive and delete runs alone and in bulk, and the
cursors and bounded totals of the lists, on the real database (SQLite, or PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from shared.domain.status import RunStatus
from shared.store import queries
from shared.store.history import OWNED
from shared.store.models import Checkpoint, Run, TrainedModel
from tests.builders import EVALUATION, make_run

DONE = RunStatus.SUCCEEDED


def ids(client: FlaskClient, query: str = "") -> list[int]:
    response = client.get(f"/api/runs?{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return [run["id"] for run in response.get_json()["runs"]]


def patch(client: FlaskClient, run_id: int, body: dict[str, Any]) -> Any:
    return client.patch(f"/api/runs/{run_id}", json=body)


def test_rename_tag_and_annotate_a_run(client: FlaskClient, session: Session) -> None:
    run = make_run(session, name="typo")
    answer = patch(client, run.id, {"name": "baseline", "tags": ["cnn", "v2:a", "cnn"]})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert (answer.json["name"], answer.json["tags"]) == ("baseline", ["cnn", "v2:a"])
    answer = patch(client, run.id, {"note": "lr too high\nretry"})
    assert (answer.json["name"], answer.json["tags"], answer.json["note"]) == (
        "baseline",
        ["cnn", "v2:a"],
        "lr too high\nretry",
    )
    listed = client.get("/api/runs").json["runs"][0]
    assert listed["tags"] == ["cnn", "v2:a"] and listed["note"] == "lr too high\nretry"
    assert patch(client, run.id, {"note": None}).json["note"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"tags": ["no spaces"]}, "tags.0"),
        ({"tags": ["x" * 65]}, "tags.0"),
        ({"tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"note": "n" * 10_001}, "note"),
        ({"name": ""}, "name"),
        ({"archived": "yes"}, "archived"),
    ],
)
def test_a_bad_patch_is_a_422_naming_the_field(
    client: FlaskClient, session: Session, body: dict[str, Any], field: str
) -> None:
    run = make_run(session, name="kept")
    answer = patch(client, run.id, body)
    assert answer.status_code == 422, answer.get_data(as_text=True)
    assert field in answer.json["error"]["fields"], answer.json
    assert client.get(f"/api/runs/{run.id}").json["name"] == "kept"


def test_patching_an_unknown_run_is_a_404(client: FlaskClient) -> None:
    assert patch(client, 999_999, {"name": "x"}).status_code == 404


def test_filter_by_tags_takes_runs_carrying_all_of_them(
    client: FlaskClient, session: Session
) -> None:
    both, only_a, none = (make_run(session) for _ in range(3))
    patch(client, both.id, {"tags": ["a", "b.c"]})
    patch(client, only_a.id, {"tags": ["a"]})
    assert ids(client, "tag=a&sort=id") == [both.id, only_a.id]
    assert ids(client, "tag=a,b.c") == [both.id]
    assert ids(client, "tag=a&tag=b.c") == [both.id]
    assert ids(client, "tag=zzz") == []
    assert none.id in ids(client)
    assert client.get("/api/runs?tag=bad tag").status_code == 400
    lines = client.get("/api/runs?tag=a&sort=id&format=csv").get_data(as_text=True).splitlines()
    assert lines[0].startswith("id,name,tags,status,archived")
    assert [line.split(",")[2] for line in lines[1:]] == ["a b.c", "a"]


def test_archive_hides_a_run_and_restores_it(client: FlaskClient, session: Session) -> None:
    kept, hidden = make_run(session), make_run(session)
    assert patch(client, hidden.id, {"archived": True}).json["archived"] is True
    assert ids(client) == [kept.id]
    assert ids(client, "archived=true") == [hidden.id]
    assert ids(client, "archived=any&sort=id") == [kept.id, hidden.id]
    assert client.get(f"/api/runs/{hidden.id}").status_code == 200  # readable by id
    patch(client, hidden.id, {"archived": False})
    assert ids(client, "sort=id") == [kept.id, hidden.id]


def exists(session: Session, run_id: int) -> bool:
    return session.scalar(select(func.count()).where(Run.id == run_id)) == 1


def owned_rows(session: Session, run_id: int) -> int:
    session.expire_all()
    return sum(
        session.scalar(select(func.count()).select_from(table).where(table.run_id == run_id)) or 0
        for table in OWNED
    )


def test_delete_removes_the_run_and_every_row_and_blob_it_owns(
    client: FlaskClient, session: Session
) -> None:
    run = make_run(session, status=DONE, epochs_done=2, test_accuracy=0.9, evaluation=EVALUATION)
    other = make_run(session, status=DONE, epochs_done=1, test_accuracy=0.8)
    session.add(TrainedModel(run_id=run.id, keras_file=b"k" * 1000, size=1000))
    session.add(Checkpoint(run_id=run.id, epoch=2, attempt=1, state=b"s" * 100, size=100))
    session.commit()
    run_id, other_id = run.id, other.id
    assert owned_rows(session, run_id) == 2 + 1 + 1 + 1
    answer = client.delete(f"/api/runs/{run_id}", json={})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.json["runs"] == 1
    assert owned_rows(session, run_id) == 0
    assert not exists(session, run_id)
    assert client.get(f"/api/runs/{run_id}").status_code == 404
    assert owned_rows(session, other_id) == 1  # another run's epochs stay
    assert client.delete(f"/api/runs/{run_id}").status_code == 404  # a body is optional


@pytest.mark.parametrize("status", [RunStatus.QUEUED, RunStatus.RUNNING])
def test_deleting_an_unfinished_run_is_a_409_naming_its_status(
    client: FlaskClient, session: Session, status: RunStatus
) -> None:
    run = make_run(session, status=status)
    answer = client.delete(f"/api/runs/{run.id}", json={})
    assert answer.status_code == 409
    assert status.value in answer.json["error"]["message"]
    assert answer.json["error"]["fields"] == {"status": status.value}
    assert exists(session, run.id)


def test_a_studys_run_is_deleted_with_its_study(api: FlaskClient, session: Session) -> None:
    client = api  # the study's messages go to a queue no worker reads
    body = {"name": "s", "grid": {"dropout": [0.1, 0.2]}, "seeds": 1}
    study_id = client.post("/api/studies", json=body).json["id"]
    first = session.scalar(select(Run.id).where(Run.study_id == study_id).order_by(Run.id))
    # Its runs are queued: the study cannot go either, until they finish or are cancelled.
    assert client.delete(f"/api/studies/{study_id}", json={}).status_code == 409
    assert client.post(f"/api/studies/{study_id}/cancel", json={}).status_code in (200, 202)
    answer = client.delete(f"/api/runs/{first}", json={})
    assert answer.status_code == 409
    assert f"/api/studies/{study_id}" in answer.json["error"]["message"]
    archived = client.patch(f"/api/studies/{study_id}", json={"archived": True})
    assert archived.status_code == 200, archived.get_data(as_text=True)
    assert ids(client, f"study_id={study_id}") == []
    answer = client.delete(f"/api/studies/{study_id}", json={})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.json == {"runs": 2, "study_id": study_id}
    assert client.get(f"/api/studies/{study_id}").status_code == 404
    assert ids(client, "archived=any") == []


def bulk(client: FlaskClient, body: dict[str, Any]) -> Any:
    return client.post("/api/runs/bulk", json=body)


def test_bulk_by_ids_tags_untags_archives_and_deletes(
    client: FlaskClient, session: Session
) -> None:
    done = [make_run(session, status=DONE) for _ in range(3)]
    running = make_run(session, status=RunStatus.RUNNING)
    every = [run.id for run in [*done, running]]
    answer = bulk(client, {"ids": every, "action": "tag", "tags": ["sweep", "q4"]})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert (answer.json["matched"], answer.json["affected"]) == (4, 4)
    assert ids(client, "tag=sweep,q4&sort=id") == every
    bulk(client, {"ids": every[:1], "action": "untag", "tags": ["q4"]})
    assert ids(client, "tag=q4&sort=id") == every[1:]
    assert bulk(client, {"ids": every[:2], "action": "archive"}).json["affected"] == 2
    assert ids(client, "sort=id") == every[2:]
    bulk(client, {"ids": every[:1], "action": "unarchive"})
    answer = bulk(client, {"ids": [*every, 999_999], "action": "delete"})
    assert (answer.json["matched"], answer.json["affected"]) == (5, 3)
    assert answer.json["skipped"] == [
        {"id": running.id, "reason": "it is running: cancel it first"},
        {"id": 999_999, "reason": "no such run"},
    ]
    assert ids(client, "archived=any") == [running.id]


def test_bulk_by_filter_acts_on_every_matching_run(client: FlaskClient, session: Session) -> None:
    sgd = [make_run(session, status=DONE, optimizer="sgd").id for _ in range(3)]
    adam = make_run(session, status=DONE, optimizer="adam")
    answer = bulk(client, {"filter": {"optimizer": "sgd", "limit": "1"}, "action": "archive"})
    assert answer.json["affected"] == 3, answer.get_data(as_text=True)
    assert ids(client) == [adam.id]
    answer = bulk(client, {"filter": {"archived": "true"}, "action": "delete"})
    assert answer.json["affected"] == 3
    assert not any(exists(session, run_id) for run_id in sgd)


def test_bulk_over_its_bound_or_malformed_changes_nothing(
    client: FlaskClient, session: Session
) -> None:
    runs = [make_run(session) for _ in range(3)]
    client.application.config["TRAINYARD"].bulk_max  # noqa: B018 (the setting exists)
    too_many = bulk(client, {"ids": list(range(1, 1002)), "action": "archive"})
    assert too_many.status_code == 413
    assert "ids" in too_many.json["error"]["fields"]
    assert bulk(client, {"action": "archive"}).status_code == 422
    assert bulk(client, {"ids": [1], "filter": {}, "action": "archive"}).status_code == 422
    assert bulk(client, {"ids": [1], "action": "tag"}).json["error"]["fields"] == {
        "tags": "tag needs at least one tag"
    }
    bad = bulk(client, {"filter": {"colour": "red"}, "action": "archive"})
    assert bad.status_code == 422 and "filter.colour" in bad.json["error"]["fields"]
    assert bulk(client, {"ids": [1], "action": "explode"}).status_code == 422
    assert sorted(ids(client)) == sorted(run.id for run in runs)


def test_bulk_filter_matching_more_than_the_bound_is_a_413(session: Session, settings: Any) -> None:
    from tests.support.app import client_for

    small = client_for(settings.with_overrides(bulk_max=2))
    for _ in range(3):
        make_run(session)
    answer = small.post("/api/runs/bulk", json={"filter": {}, "action": "archive"})
    assert answer.status_code == 413 and "filter" in answer.json["error"]["fields"]
    assert len(ids(small)) == 3


def walk(client: FlaskClient, query: str, cursor: str | None = None) -> list[int]:
    """Every id of the list (from `cursor` on), following next_cursor page after page."""
    seen: list[int] = []
    answer = client.get(f"/api/runs?{query}" + (f"&cursor={cursor}" if cursor else "")).json
    while True:
        seen += [run["id"] for run in answer["runs"]]
        if answer["next_cursor"] is None:
            return seen
        answer = client.get(f"/api/runs?{query}&cursor={answer['next_cursor']}").json


@pytest.mark.parametrize("sort", ["-id", "test_accuracy", "-test_accuracy", "name", "-status"])
def test_cursor_pages_walk_every_run_once_in_order(
    client: FlaskClient, session: Session, sort: str
) -> None:
    accuracies = [0.5, None, 0.7, 0.5, None, 0.9, 0.7]
    for i, accuracy in enumerate(accuracies):
        status = DONE if accuracy is not None else RunStatus.QUEUED
        make_run(session, name=f"r{i % 3}", status=status, test_accuracy=accuracy)
    everything = ids(client, f"sort={sort}&limit=200")
    assert walk(client, f"sort={sort}&limit=2") == everything
    assert len(everything) == len(accuracies)


def test_cursor_pages_are_stable_under_inserts(client: FlaskClient, session: Session) -> None:
    first = [make_run(session).id for _ in range(5)]
    page = client.get("/api/runs?limit=2").json
    assert [run["id"] for run in page["runs"]] == first[:-3:-1]
    newer = make_run(session).id  # lands on top; the cursor goes on where it was
    rest = walk(client, "limit=2", page["next_cursor"])
    assert rest == first[-3::-1] and newer not in rest


def test_a_tampered_or_foreign_cursor_is_a_400(client: FlaskClient, session: Session) -> None:
    for _ in range(3):
        make_run(session)
    cursor = client.get("/api/runs?limit=1").json["next_cursor"]
    payload, _, signature = cursor.partition(".")
    tampered = client.get(f"/api/runs?limit=1&cursor={payload[:-2]}xx.{signature}")
    assert tampered.status_code == 400 and "cursor" in tampered.json["error"]["fields"]
    other_sort = client.get(f"/api/runs?limit=1&sort=name&cursor={cursor}")
    assert other_sort.status_code == 400
    assert "sort" in other_sort.json["error"]["fields"]["cursor"]
    assert client.get("/api/runs?cursor=garbage").status_code == 400


def test_totals_are_exact_up_to_the_bound_then_said_as_a_bound(
    session: Session, client: FlaskClient
) -> None:
    for _ in range(4):
        make_run(session)
    listing = client.get("/api/runs?limit=1").json
    assert (listing["total"], listing["total_relation"], listing["pages"]) == (4, "eq", 4)
    query = queries.RunQueryBase()
    assert queries.count_matching(session, query, bound=10).relation == "eq"
    capped = queries.count_matching(session, query, bound=3)
    # Past the bound: at least the bound, or (PostgreSQL) the planner's estimate, said as such.
    assert (capped.relation, capped.value) == ("gte", 3) or capped.relation == "about"


def test_a_filter_past_the_bound_pages_the_same_whichever_way_it_is_read(
    session: Session, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the exact-count bound, filters that match few runs of the store (the planner's
    estimate, on PostgreSQL) are read through their own indexes and sorted, not by walking the
    sort's index hoping to meet them: the pages, their order and the cursors stay the same."""
    made = [make_run(session, learning_rate=0.01 if i % 3 else 0.05).id for i in range(12)]
    matching = [run_id for i, run_id in enumerate(made) if i % 3][::-1]
    executed: list[str] = []

    def record(*args: Any) -> None:
        executed.append(args[2])

    monkeypatch.setattr(queries, "TOTAL_BOUND", 3)
    event.listen(Engine, "before_cursor_execute", record)
    try:
        assert walk(client, "learning_rate_max=0.02&limit=3") == matching
        assert walk(client, "learning_rate_max=0.02&limit=3&sort=id") == matching[::-1]
        listing = client.get("/api/runs?learning_rate_max=0.02&limit=3").json
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert listing["total_relation"] in ("gte", "about")
    guided = any("enable_indexscan = off" in statement for statement in executed)
    assert guided == (session.get_bind().dialect.name == "postgresql")
