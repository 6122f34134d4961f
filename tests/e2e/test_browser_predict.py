"""The "Try it" pad in headless Chromium against gunicorn: runs trained by the real worker, a digit
drawn with the mouse, the label and bars each run predicts, on the run page and the compare page."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page

from shared.config import Settings
from shared.store.engine import Store
from tests.support.app import client_for, submit_run
from tests.support.browser import assert_console_clean, new_page, screenshot
from tests.support.waiting import until_finished, wait_for

pytestmark = pytest.mark.browser


def draw_a_one(page: Page) -> None:
    """A vertical stroke down the middle of the pad, slightly slanted, with the mouse."""
    pad = page.locator("#pad-canvas")
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    assert box is not None
    x, top = box["x"] + box["width"] * 0.52, box["y"] + box["height"] * 0.15
    page.mouse.move(x, top)
    page.mouse.down()
    for step in range(1, 21):
        page.mouse.move(x - step * 0.6, top + step * box["height"] * 0.035)
    page.mouse.up()


def predicted(page: Page, run_id: int) -> str:
    """The label the pad shows for the run, once it shows one."""
    label = page.locator(f".pad-label[data-run-id='{run_id}']")
    note = page.locator("#pad-note")
    wait_for(lambda: label.text_content() != "" or note.text_content(), 20, what="a prediction")
    return f"{label.text_content()} {note.text_content()} {bars(page, run_id)}"


def bars(page: Page, run_id: int) -> list[float]:
    return page.eval_on_selector_all(
        f".pad-run[data-run-id='{run_id}'] meter", "meters => meters.map(m => m.value)"
    )


def test_a_digit_drawn_on_the_pad_is_classified_by_each_run(
    settings: Settings, store: Store, worker: Settings, live_server: str, browser: Browser
) -> None:
    client = client_for(settings)
    ids = [
        submit_run(client, f"pad {seed}", epochs=2, train_samples=6000, seed=seed)
        for seed in (1, 2)
    ]
    assert {run.status.value for run in until_finished(store, *ids)} == {"succeeded"}

    page = new_page(browser)
    page.goto(f"{live_server}/runs/{ids[0]}")
    assert page.is_visible("#try-it")
    draw_a_one(page)
    assert predicted(page, ids[0]).startswith("1 "), predicted(page, ids[0])
    assert sum(bars(page, ids[0])) == pytest.approx(1.0, abs=1e-3)
    assert page.get_attribute("#pad-seen", "src").startswith("data:image/png;base64,")
    screenshot(page, "pad-run.png")
    page.click("#pad-clear")
    label = page.text_content(f".pad-label[data-run-id='{ids[0]}']")
    assert label == "" and sum(bars(page, ids[0])) == 0

    page.goto(f"{live_server}/compare?ids={ids[0]},{ids[1]}")
    draw_a_one(page)
    for run_id in ids:
        assert predicted(page, run_id).startswith("1 "), predicted(page, run_id)
    screenshot(page, "pad-compare.png")
    assert_console_clean()
