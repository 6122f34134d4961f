"""What a user notices in the first hour, in headless Chromium against gunicorn and a real worker:
runs submitted elsewhere appear, compare follows training runs, stale notes go, no 404s."""

from __future__ import annotations

import re
import time
import urllib.request

import pytest
from playwright.sync_api import Browser, Page

from cli.client import Client
from shared.config import Settings
from tests.support.browser import assert_console_clean, mark_loaded, new_page, same_document
from tests.support.waiting import wait_for

pytestmark = pytest.mark.browser
# About a second an epoch on one thread: long enough to watch, short enough for CI.
WATCHABLE = {"train_samples": 60000, "batch_size": 16, "epochs": 4}


def row_ids(page: Page) -> list[int]:
    return page.eval_on_selector_all(
        "#runs-body tr[data-run-id]", "rows => rows.map(r => Number(r.dataset.runId))"
    )


def test_runs_submitted_elsewhere_appear_and_finished_ones_move_on(
    settings: Settings, worker: Settings, live_server: str, browser: Browser
) -> None:
    client = Client(live_server)
    earlier = client.submit({"train_samples": 500, "epochs": 1, "seed": 1}, "earlier")["id"]
    wait_for(lambda: client.run(earlier)["status"] == "succeeded", 120, what="the earlier run")
    page = new_page(browser)
    page.goto(f"{live_server}/runs?status=queued&status=running&sort=-id")
    mark_loaded(page)
    assert row_ids(page) == []
    # Submitted through the API while the page is open: it shows up, newest first.
    first = client.submit({**WATCHABLE, "seed": 2}, "from the API")["id"]
    second = client.submit({**WATCHABLE, "seed": 3}, "from the CLI's API too")["id"]
    wait_for(lambda: row_ids(page) == [second, first], 20, what="the new runs on the page")
    assert page.text_content("#runs-total").strip() == "2 matching"
    # Once they finish they no longer match the page's filter, and leave it.
    wait_for(lambda: row_ids(page) == [], 180, interval=0.5, what="the finished runs to move on")
    assert same_document(page), "the page reloaded"
    assert_console_clean()


def test_compare_follows_a_training_run_and_stops_when_it_is_done(
    settings: Settings, worker: Settings, live_server: str, browser: Browser
) -> None:
    client = Client(live_server)
    done = client.submit({**WATCHABLE, "epochs": 1, "seed": 4}, "done")["id"]
    wait_for(lambda: client.run(done)["status"] == "succeeded", 120, what="the first run")
    training = client.submit({**WATCHABLE, "seed": 5}, "training")["id"]
    wait_for(lambda: client.run(training)["status"] == "running", 60, what="the run to start")
    page = new_page(browser)
    page.goto(f"{live_server}/compare?ids={done},{training}")
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))

    def points() -> int:
        return page.evaluate(
            f"""window.trainyardCharts.loss.data.datasets
                .filter(d => d.runId === {training}).map(d => d.data.length)[0] || 0"""
        )

    seen = {points()}
    wait_for(
        lambda: (
            seen.add(points())
            or page.text_content(f"[data-run-id='{training}'][data-field=status]") == "succeeded"
        ),
        180,
        interval=0.3,
        what="the compared run to finish on the page",
    )
    assert len(seen) >= 3, f"the curve did not grow epoch by epoch: {seen}"
    assert points() == 4
    accuracy = page.get_attribute(
        f"td[data-field=test_accuracy][data-run-id='{training}']", "data-value"
    )
    assert float(accuracy) == client.run(training)["test_accuracy"]
    delta = page.get_attribute(
        f"td[data-field=test_accuracy][data-run-id='{training}']", "data-delta"
    )
    assert float(delta) == pytest.approx(
        client.run(training)["test_accuracy"] - client.run(done)["test_accuracy"], abs=1e-6
    )
    polls = sum("/api/compare" in url for url in requests)
    time.sleep(2.5)
    assert sum("/api/compare" in url for url in requests) == polls, "still polling after the end"
    assert_console_clean()


def test_the_queued_note_goes_once_the_run_has_moved_on(
    settings: Settings, worker: Settings, live_server: str, browser: Browser
) -> None:
    # The worker is busy with another run, so the new one waits in the queue at first.
    client = Client(live_server)
    busy = client.submit({**WATCHABLE, "seed": 6}, "busy")["id"]
    wait_for(lambda: client.run(busy)["status"] == "running", 60, what="the worker to be busy")
    page = new_page(browser)
    page.goto(f"{live_server}/runs/new")
    page.fill("input[name=epochs]", "1")
    page.fill("input[name=train_samples]", "500")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    run_id = int(page.url.rsplit("/", 1)[1])
    assert f"Run {run_id} queued." in page.text_content("main")
    page.wait_for_selector("#run-status:text('succeeded')", timeout=120_000)
    assert not page.query_selector(".flash[data-category=queued]")
    assert_console_clean()


def test_the_favicon_is_served(live_server: str) -> None:
    with urllib.request.urlopen(f"{live_server}/favicon.ico", timeout=5) as answer:
        assert answer.status == 200 and answer.headers["Content-Type"].startswith("image/svg+xml")
        assert b"<svg" in answer.read()
