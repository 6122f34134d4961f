"""The dashboard pages on a real database: filters, sorting, paging, compare, clone, evaluation."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from shared.domain.status import RunStatus
from shared.store.workers import register_worker
from tests.builders import make_run
from tests.support.pages import decode_png, find, page, run_ids
from web.digits import png_from_pixels


def test_runs_page_filters_from_a_plain_get_form(client: FlaskClient, session: Session) -> None:
    adam = make_run(session, optimizer="adam", hidden_units=64)
    sgd = make_run(session, optimizer="sgd", hidden_units=256, status=RunStatus.RUNNING)
    done = make_run(
        session, optimizer="sgd", hidden_units=512, status=RunStatus.SUCCEEDED, test_accuracy=0.97
    )
    # What a browser sends: every blank input, and one `status` per ticked box.
    html = page(client, "/runs?q=&optimizer=sgd&status=running&status=succeeded&hidden_units_min=")
    assert run_ids(html) == [done.id, sgd.id]
    assert run_ids(page(client, "/runs?hidden_units_max=100")) == [adam.id]
    assert run_ids(page(client, "/runs?test_accuracy_min=0.9")) == [done.id]
    assert run_ids(page(client, "/runs?hidden_units_min=200&hidden_units_max=300")) == [sgd.id]
    # The form shows the filters it applied.
    assert "checked" in find(html, "input", name="status", value="running")[0]["attrs"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("hidden_units_min=lots", "hidden_units_min"),
        ("status=sleeping", "status"),
        ("sort=-nonsense", "sort"),
        ("limit=100000", "limit"),
        ("colour=red", "colour"),
    ],
)
def test_runs_page_explains_a_bad_filter(client: FlaskClient, query: str, field: str) -> None:
    html = page(client, f"/runs?{query}", status=400)
    error = find(html, "div", id="filter-error")
    assert error, "no error box"
    assert field in error[0]["text"]


def test_runs_page_sorts_and_pages(client: FlaskClient, session: Session) -> None:
    accuracies = [0.91, 0.95, 0.93, 0.99, 0.90]
    runs = [
        make_run(session, status=RunStatus.SUCCEEDED, test_accuracy=a, epochs=1) for a in accuracies
    ]
    by_accuracy = [r.id for r in sorted(runs, key=lambda r: -r.test_accuracy)]
    first = page(client, "/runs?sort=-test_accuracy&limit=2")
    second = page(client, "/runs?sort=-test_accuracy&limit=2&page=2")
    third = page(client, "/runs?sort=-test_accuracy&limit=2&page=3")
    assert run_ids(first) + run_ids(second) + run_ids(third) == by_accuracy
    assert "page 2 of 3" in second
    # The pager keeps the filters and the sort.
    next_link = find(second, "a", rel="next")[0]["attrs"]["href"]
    assert "sort=-test_accuracy" in next_link
    assert "page=3" in next_link
    assert run_ids(page(client, "/runs?sort=id")) == sorted(r.id for r in runs)


def test_runs_page_shows_progress_and_queue_places(client: FlaskClient, session: Session) -> None:
    running = make_run(session, status=RunStatus.RUNNING, epochs_done=2, epochs=5)
    first = make_run(session)
    second = make_run(session)
    html = page(client, "/runs")
    progress = {
        int(e["attrs"]["data-run-id"]): e["text"]
        for e in find(html, "tr")
        if "data-run-id" in e["attrs"]
    }
    assert "epoch 2 of 5" in progress[running.id]
    assert "loss 0.5000" in progress[running.id]
    assert "#1 in queue" in progress[first.id]
    assert "#2 in queue" in progress[second.id]
    # Checkboxes belong to the compare form, which is a plain GET to /compare.
    boxes = find(html, "input", name="ids", form="compare-form")
    assert sorted(int(b["attrs"]["value"]) for b in boxes) == sorted(
        [running.id, first.id, second.id]
    )
    assert find(html, "form", id="compare-form")[0]["attrs"]["action"] == "/compare"


def _finished_pair(session: Session) -> tuple[Any, Any]:
    a = make_run(
        session, status=RunStatus.SUCCEEDED, epochs_done=3, epochs=3, test_accuracy=0.97,
        test_loss=0.08, normalize=True, seed=7,
    )  # fmt: skip
    b = make_run(
        session, status=RunStatus.SUCCEEDED, epochs_done=3, epochs=3, test_accuracy=0.93,
        test_loss=0.29, normalize=False, seed=7,
    )  # fmt: skip
    return a, b


def test_compare_highlights_only_the_differing_parameters(
    client: FlaskClient, session: Session
) -> None:
    a, b = _finished_pair(session)
    html = page(client, f"/compare?ids={a.id},{b.id}")
    rows = {e["attrs"]["data-param"]: e for e in find(html, "tr") if "data-param" in e["attrs"]}
    assert rows["normalize"]["attrs"]["data-differs"] == "true"
    assert "hidden" not in rows["normalize"]["attrs"]
    assert [name for name, row in rows.items() if row["attrs"]["data-differs"] == "true"] == [
        "normalize"
    ]
    # "Show only differences" is on by default: equal rows are there but hidden...
    assert "hidden" in rows["epochs"]["attrs"]
    assert "checked" in find(html, "input", id="only-differences")[0]["attrs"]
    # ...and ?all=1 (the no-JavaScript switch) shows them.
    all_rows = find(page(client, f"/compare?ids={a.id},{b.id}&all=1"), "tr", data_param="epochs")
    assert "hidden" not in all_rows[0]["attrs"]


def test_compare_deltas_follow_the_chosen_baseline(client: FlaskClient, session: Session) -> None:
    a, b = _finished_pair(session)

    def deltas(url: str) -> dict[int, str]:
        cells = find(page(client, url), "td", data_field="test_accuracy")
        return {int(c["attrs"]["data-run-id"]): c["attrs"]["data-delta"] for c in cells}

    assert float(deltas(f"/compare?ids={a.id},{b.id}")[b.id]) == pytest.approx(-0.04)
    assert float(deltas(f"/compare?ids={a.id},{b.id}&baseline={b.id}")[a.id]) == pytest.approx(0.04)
    # The runs page's checkboxes send ids once per box; the shared link sends ids=3,7.
    html = page(client, f"/compare?ids={b.id}&ids={a.id}")
    assert find(html, "span", id="baseline-badge")
    assert f"/runs/new?clone={a.id}" in html
    assert f'href="/runs/{b.id}"' in html


@pytest.mark.parametrize(
    ("query", "status", "reason"),
    [
        ("", 400, "required"),
        ("ids=1", 400, "at least 2 items"),
        ("ids=1,x", 400, "not an integer"),
        ("ids={a},{a}", 400, "ids must be distinct"),
        ("ids=999998,999999", 404, "unknown run ids"),
        # A baseline outside `ids` is compared too, as in the API: so it must exist.
        ("ids={a},{b}&baseline=12345", 404, "unknown run ids: [12345]"),
        ("ids={a},{b}&baseline=first", 400, "not an integer"),
        ("ids={a},{b}&ids={a}", 400, "ids must be distinct"),
    ],
)
def test_compare_rejects_bad_ids(
    client: FlaskClient, session: Session, query: str, status: int, reason: str
) -> None:
    a, b = _finished_pair(session)
    html = page(client, "/compare?" + query.format(a=a.id, b=b.id), status=status)
    assert reason in html


def test_clone_prefills_the_form_but_not_the_seed(client: FlaskClient, session: Session) -> None:
    source = make_run(
        session, name="wide", hidden_units=512, learning_rate=0.01, optimizer="sgd",
        normalize=False, dropout=0.3, seed=42,
    )  # fmt: skip
    html = page(client, f"/runs/new?clone={source.id}")
    assert find(html, "input", name="hidden_units")[0]["attrs"]["value"] == "512"
    assert find(html, "input", name="learning_rate")[0]["attrs"]["value"] == "0.01"
    assert find(html, "input", name="dropout")[0]["attrs"]["value"] == "0.3"
    assert "selected" in find(html, "option", value="sgd")[0]["attrs"]
    assert "checked" not in find(html, "input", name="normalize")[0]["attrs"]
    assert find(html, "input", name="seed")[0]["attrs"].get("value", "") == ""
    assert find(html, "input", name="name")[0]["attrs"]["value"] == "wide (clone)"
    page(client, "/runs/new?clone=99999", status=404)
    page(client, "/runs/new?clone=abc", status=400)


def test_run_page_shows_queue_place_and_cancel(client: FlaskClient, session: Session) -> None:
    make_run(session)
    queued = make_run(session)
    html = page(client, f"/runs/{queued.id}")
    assert "#2 in queue" in html
    assert "hidden" not in find(html, "form", id="cancel-form")[0]["attrs"]
    response = client.post(f"/runs/{queued.id}/cancel")
    assert response.status_code == 302
    html = page(client, f"/runs/{queued.id}")
    assert find(html, "span", id="run-status")[0]["text"] == "cancelled"
    assert "hidden" in find(html, "form", id="cancel-form")[0]["attrs"]


def _pixels(seed: int) -> bytes:
    return bytes((seed * 31 + i * 7) % 256 for i in range(784))


def test_png_round_trips_the_digit() -> None:
    pixels = _pixels(3)
    assert decode_png(png_from_pixels(pixels)) == (28, 28, pixels)
    with pytest.raises(ValueError):
        png_from_pixels(b"\x00" * 10)


def test_run_page_draws_the_confusion_matrix_and_the_digits(
    client: FlaskClient, session: Session
) -> None:
    matrix = [[90 if t == p else 1 for p in range(10)] for t in range(10)]
    wrong = [
        {"index": i, "label": i % 10, "predicted": (i + 1) % 10, "image": base64.b64encode(_pixels(i)).decode()}
        for i in range(5)
    ]  # fmt: skip
    run = make_run(
        session, status=RunStatus.SUCCEEDED, epochs_done=1, epochs=1, test_loss=0.1, test_accuracy=0.9,
        evaluation={"confusion_matrix": matrix, "per_class_accuracy": [0.9] * 10, "misclassified": wrong},
    )  # fmt: skip
    for html in (page(client, f"/runs/{run.id}"), page(client, f"/runs/{run.id}/evaluation")):
        cells = find(html, "td", **{"data-count": "90"})
        assert len(cells) == 10
        assert len([c for c in find(html, "td") if "data-count" in c["attrs"]]) == 100
        images = [e for e in find(html, "img") if e["attrs"]["src"].startswith("data:image/png")]
        assert len(images) == 5
        src = images[2]["attrs"]["src"].removeprefix("data:image/png;base64,")
        assert decode_png(base64.b64decode(src))[2] == _pixels(2)
        assert re.search(r"2 → <b>3</b>", html)


def test_workers_page_lists_registered_workers(client: FlaskClient, session: Session) -> None:
    register_worker(session, "w1@box", "box", 4242, 2)
    session.commit()
    held = make_run(session, status=RunStatus.RUNNING, worker="w1@box")
    html = page(client, "/workers")
    row = find(html, "tr", data_worker="w1@box")[0]
    assert row["attrs"]["data-alive"] == "true"
    assert "4242" in row["text"]
    assert f'href="/runs/{held.id}"' in html
    assert 'href="/workers"' in page(client, "/runs")
