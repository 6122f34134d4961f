"""The dashboard's history forms, without JavaScript: rename, tag, annotate, archive and delete a
run, bulk actions with their confirmation, chips, the tag filter and the cursor pager."""

from __future__ import annotations

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.domain.status import RunStatus
from shared.store.models import Run
from tests.builders import make_run
from tests.support.pages import find, page, run_ids


def test_run_page_renames_tags_and_annotates(client: FlaskClient, session: Session) -> None:
    run_id = make_run(session, name="typo").id
    form = {"name": "baseline", "tags": "cnn, v2  q:4", "note": "first try\r\nlr 0.01"}
    answer = client.post(f"/runs/{run_id}/edit", data=form)
    assert answer.status_code == 303
    html = page(client, f"/runs/{run_id}")
    assert find(html, "span", id="run-name")[0]["text"] == "baseline"
    assert [chip["text"] for chip in find(html, "a", **{"class": "chip"})] == ["cnn", "v2", "q:4"]
    assert "first try\nlr 0.01" in find(html, "textarea", name="note")[0]["text"]
    refused = client.post(f"/runs/{run_id}/edit", data={"tags": "no/slash"})
    assert "Not saved" in page(client, refused.headers["Location"])
    assert client.get(f"/api/runs/{run_id}").json["tags"] == ["cnn", "v2", "q:4"]


def test_runs_page_shows_chips_filters_by_tag_and_pages_by_cursor(
    client: FlaskClient, session: Session
) -> None:
    runs = [make_run(session).id for _ in range(5)]
    client.patch(f"/api/runs/{runs[0]}", json={"tags": ["keep"]})
    client.patch(f"/api/runs/{runs[1]}", json={"tags": ["keep", "x"]})
    html = page(client, "/runs?tag=keep")
    assert run_ids(html) == [runs[1], runs[0]]
    assert "keep" in [chip["text"] for chip in find(html, "a", **{"class": "chip"})]
    first = page(client, "/runs?limit=2")
    next_link = find(first, "a", rel="next")[0]["attrs"]["href"]
    assert "cursor=" in next_link and "page=2" in next_link
    second = page(client, next_link)
    assert run_ids(first) + run_ids(second) == runs[::-1][:4]
    assert "page 2 of 3" in second


def test_archive_from_the_run_page_and_find_it_one_click_away(
    client: FlaskClient, session: Session
) -> None:
    kept, hidden = make_run(session).id, make_run(session).id
    assert client.post(f"/runs/{hidden}/archive", data={"archived": "1"}).status_code == 303
    runs_html = page(client, "/runs")
    assert run_ids(runs_html) == [kept]
    toggle = find(runs_html, "a", id="archived-toggle")[0]["attrs"]["href"]
    assert run_ids(page(client, toggle)) == [hidden]
    client.post(f"/runs/{hidden}/archive", data={"archived": "0"})
    assert run_ids(page(client, "/runs")) == [hidden, kept]


def test_delete_asks_first_then_deletes(client: FlaskClient, session: Session) -> None:
    done = make_run(session, status=RunStatus.SUCCEEDED, epochs_done=1).id
    running = make_run(session, status=RunStatus.RUNNING).id
    assert find(page(client, f"/runs/{done}/delete"), "button", id="delete-confirm")
    assert client.post(f"/runs/{done}/delete").headers["Location"].endswith("/runs")
    assert client.get(f"/runs/{done}").status_code == 404
    refused = client.post(f"/runs/{running}/delete")
    assert "cancel it" in page(client, refused.headers["Location"])
    assert session.scalar(select(func.count()).select_from(Run)) == 1


def test_bulk_from_the_runs_page_confirms_how_many_then_acts(
    client: FlaskClient, session: Session
) -> None:
    runs = [make_run(session, status=RunStatus.SUCCEEDED, optimizer="sgd").id for _ in range(3)]
    other = make_run(session, optimizer="adam").id
    # Ticked runs: the confirmation says how many, the post tags them.
    confirm = page(client, f"/runs/bulk?ids={runs[0]}&ids={runs[1]}&action=tag")
    assert find(confirm, "p", id="bulk-count")[0]["attrs"]["data-count"] == "2"
    client.post("/runs/bulk", data={"ids": runs[:2], "action": "tag", "tags": "good run"})
    assert [r["id"] for r in client.get("/api/runs?tag=good,run&sort=id").json["runs"]] == runs[:2]
    # Every run matching the filter: the link carries the filter, the count is the filter's.
    html = page(client, "/runs?optimizer=sgd")
    link = find(html, "a", id="bulk-all")[0]["attrs"]["href"]
    confirm = page(client, link + "&action=delete")
    assert find(confirm, "p", id="bulk-count")[0]["attrs"]["data-count"] == "3"
    done = client.post("/runs/bulk", data={"filter": "optimizer=sgd", "action": "delete"})
    assert "Delete: 3 of 3 runs." in page(client, done.headers["Location"])
    assert run_ids(page(client, "/runs")) == [other]
