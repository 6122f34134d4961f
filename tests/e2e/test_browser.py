"""The dashboard in headless Chromium against gunicorn and a real worker: submit, watch, compare.

Screenshots land in artifacts/screenshots/ (git-ignored; CI keeps them as artifacts).
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Page

from shared.config import Settings
from tests.support.browser import (
    assert_console_clean,
    mark_loaded,
    new_page,
    same_document,
    screenshot,
)

pytestmark = pytest.mark.browser

EPOCHS = 6
FINISHED = ("succeeded", "failed", "cancelled")


def submit_through_form(page: Page, base: str, name: str, normalize: bool) -> int:
    """Fill in and post the New run form like a user; return the new run's id."""
    page.goto(f"{base}/runs/new")
    page.fill("input[name=name]", name)
    page.fill("input[name=epochs]", str(EPOCHS))
    # About 1.5 s an epoch: slow enough for a page polling once a second to see each one.
    page.fill("input[name=train_samples]", "60000")
    page.fill("input[name=batch_size]", "16")
    page.fill("input[name=validation_split]", "0.1")
    page.fill("input[name=seed]", "3")
    page.set_checked("input[name=normalize]", normalize)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def progress_of(page: Page, selector: str) -> dict[str, Any]:
    """Read the progress widget's state as the page shows it."""
    return page.eval_on_selector(
        selector,
        """el => ({status: el.dataset.status, done: Number(el.dataset.epochsDone),
                   text: el.querySelector('.progress-text').textContent.trim(),
                   bar: el.querySelector('progress').value / el.querySelector('progress').max})""",
    )


def assert_deltas(page: Page, api: dict[int, Any], baseline: int, other: int) -> None:
    """The compare page's deltas equal the API's figures of `other` minus `baseline`."""
    assert page.get_attribute("#baseline-badge", "data-run-id") == str(baseline)
    for field in ("test_accuracy", "test_loss"):
        delta = api[other][field] - api[baseline][field]
        cell = f"td[data-field={field}][data-run-id='{other}']"
        assert float(page.get_attribute(cell, "data-delta")) == pytest.approx(delta, abs=1e-6)
        assert f"{delta:+.4f}" in page.text_content(cell)
        value = page.get_attribute(
            f"td[data-field={field}][data-run-id='{baseline}']", "data-value"
        )
        assert float(value) == api[baseline][field]


def test_submit_watch_and_compare_two_runs(
    settings: Settings, worker: Settings, live_server: str, browser: Browser
) -> None:
    run_tab = new_page(browser)
    with_norm = submit_through_form(run_tab, live_server, "browser normalized", normalize=True)
    raw = submit_through_form(run_tab, live_server, "browser raw pixels", normalize=False)
    assert run_tab.url.endswith(f"/runs/{raw}")
    mark_loaded(run_tab)

    list_tab = new_page(browser)
    list_tab.goto(f"{live_server}/runs")
    mark_loaded(list_tab)
    assert list_tab.evaluate("document.visibilityState") == "visible"

    # Watch both pages until both runs are done, sampling what they show.
    seen_run_page: list[dict[str, Any]] = []
    seen_list: dict[int, list[dict[str, Any]]] = {with_norm: [], raw: []}
    shot_in_flight = False
    deadline = time.monotonic() + 240
    while True:
        state = progress_of(run_tab, "#run-summary [data-progress]")
        state["points"] = run_tab.evaluate("window.trainyardCharts.loss.data.labels.length")
        seen_run_page.append(state)
        for run_id, seen in seen_list.items():
            seen.append(progress_of(list_tab, f"tr[data-run-id='{run_id}'] [data-progress]"))
        if not shot_in_flight and seen_list[with_norm][-1]["status"] == "running":
            screenshot(list_tab, "runs-live.png")
            shot_in_flight = True
        if all(s[-1]["status"] in FINISHED for s in seen_list.values()) and (
            seen_run_page[-1]["status"] in FINISHED
        ):
            break
        assert time.monotonic() < deadline, f"runs not done: {seen_run_page[-1]}, {seen_list}"
        time.sleep(0.2)

    assert same_document(run_tab), "the run page reloaded"
    assert same_document(list_tab), "the runs page reloaded"

    # The run page showed the queue, then epochs counting up, then done.
    assert any(s["status"] == "queued" and "#1 in queue" in s["text"] for s in seen_run_page)
    running = [s["done"] for s in seen_run_page if s["status"] == "running"]
    assert any(0 < done < EPOCHS for done in running), seen_run_page
    assert running == sorted(running)
    # The curves grew with the epochs (the metrics may run a moment ahead of the summary).
    assert all(s["points"] >= s["done"] for s in seen_run_page)
    assert any(0 < s["points"] < EPOCHS for s in seen_run_page), seen_run_page
    assert seen_run_page[-1] == {
        "points": EPOCHS,
        "status": "succeeded",
        "done": EPOCHS,
        "text": f"epoch {EPOCHS} of {EPOCHS}",
        "bar": 1.0,
    }
    # The runs page moved the bars of both runs the same way.
    for run_id, seen in seen_list.items():
        done = [s["done"] for s in seen if s["status"] == "running"]
        assert done == sorted(done), (run_id, seen)
        assert seen[-1]["status"] == "succeeded" and seen[-1]["done"] == EPOCHS
    assert any(0 < s["done"] < EPOCHS for s in seen_list[with_norm] + seen_list[raw]), seen_list

    # Final figures and the evaluation arrived on the run page without a reload.
    api = {i: run_tab.request.get(f"{live_server}/api/runs/{i}").json() for i in (with_norm, raw)}
    assert run_tab.text_content("#test-accuracy") == f"{api[raw]['test_accuracy']:.4f}"
    run_tab.wait_for_selector("#confusion-matrix")
    assert not run_tab.is_visible("#cancel-button")
    assert (
        run_tab.text_content("[data-repro=tensorflow]") == api[raw]["reproducibility"]["tensorflow"]
    )
    counts = run_tab.eval_on_selector_all(
        "#confusion-matrix td[data-count]", "cells => cells.map(c => Number(c.dataset.count))"
    )
    assert len(counts) == 100 and sum(counts) == 10_000
    curve_lengths = run_tab.evaluate(
        "window.trainyardCharts.loss.data.datasets.map(d => d.data.filter(v => v !== null).length)"
    )
    assert curve_lengths == [EPOCHS, EPOCHS]  # train and validation
    screenshot(run_tab, "run.png")
    screenshot(list_tab, "runs.png")

    # Select both on the runs page and compare them.
    list_tab.check(f"tr[data-run-id='{with_norm}'] input[name=ids]")
    list_tab.check(f"tr[data-run-id='{raw}'] input[name=ids]")
    list_tab.click("#compare-button")
    list_tab.wait_for_url(re.compile(r"/compare\?"))
    compare = list_tab

    differing = compare.eval_on_selector_all(
        "#params-table tr[data-differs=true]", "rows => rows.map(r => r.dataset.param)"
    )
    assert differing == ["normalize"]  # same seed, same everything else
    assert compare.is_visible("tr[data-param=normalize]")
    assert not compare.is_visible("tr[data-param=epochs]")
    compare.uncheck("#only-differences")
    assert compare.is_visible("tr[data-param=epochs]")
    assert "all=1" in compare.url
    compare.check("#only-differences")

    charts = compare.evaluate(
        """() => Object.fromEntries(Object.entries(window.trainyardCharts).map(([k, c]) =>
             [k, c.data.datasets.map(d => ({run: d.runId, kind: d.kind, points: d.data.length,
                                             colour: d.borderColor}))]))"""
    )
    for name in ("loss", "accuracy"):
        drawn = charts[name]
        assert {(d["run"], d["kind"]) for d in drawn} == {
            (run_id, kind) for run_id in (with_norm, raw) for kind in ("train", "validation")
        }
        assert all(d["points"] == EPOCHS for d in drawn)
        assert len({d["colour"] for d in drawn if d["kind"] == "train"}) == 2

    # Deltas against the first run of the address (the default baseline), from the API's figures.
    query = parse_qs(urlsplit(compare.url).query)
    ids = [int(i) for value in query["ids"] for i in value.split(",")]
    assert sorted(ids) == sorted([with_norm, raw])
    assert_deltas(compare, api, baseline=ids[0], other=ids[1])
    screenshot(compare, "compare.png")
    # Picking the other run as baseline turns the deltas around.
    compare.click(f"a[data-make-baseline='{ids[1]}']")
    compare.wait_for_url(re.compile(rf"baseline={ids[1]}"))
    assert_deltas(compare, api, baseline=ids[1], other=ids[0])

    # Clone the raw run: the form comes back pre-filled, the seed left blank.
    compare.click(f"a[data-clone='{raw}']")
    compare.wait_for_url(re.compile(r"/runs/new\?clone="))
    assert not compare.is_checked("input[name=normalize]")
    assert compare.input_value("input[name=train_samples]") == "60000"
    assert compare.input_value("input[name=seed]") == ""

    # Every other page, for the console check: the headers forbid inline styles and scripts.
    for path in ("/workers", "/api/docs", "/runs/new", f"/runs/{with_norm}"):
        compare.goto(f"{live_server}{path}")
        compare.wait_for_load_state("networkidle")
    headers = compare.request.get(f"{live_server}/runs").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert_console_clean()
