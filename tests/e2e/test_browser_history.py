"""The runs page in headless Chromium against gunicorn: tick runs, tag them, delete one, each
through its confirmation page (CSRF on, as a browser meets it)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.domain.status import RunStatus
from tests.builders import make_run
from tests.support.browser import assert_console_clean, new_page, screenshot

pytestmark = pytest.mark.browser


def test_tag_and_delete_from_the_runs_page(
    settings: Settings, session: Session, live_server: str, browser: Browser
) -> None:
    done = RunStatus.SUCCEEDED
    first, second, third = (make_run(session, name=f"h{i}", status=done).id for i in range(3))
    page = new_page(browser)
    page.goto(f"{live_server}/runs")
    page.check(f"input[name=ids][value='{first}']")
    page.check(f"input[name=ids][value='{second}']")
    page.click("#bulk-tag")
    assert page.get_attribute("#bulk-count", "data-count") == "2"
    page.fill("#bulk-tags", "keeper v1")
    page.click("#bulk-confirm")
    page.wait_for_url(f"{live_server}/runs")
    chips = page.locator(f"tr[data-run-id='{first}'] a.chip").all_text_contents()
    assert chips == ["keeper", "v1"]
    assert page.locator(f"tr[data-run-id='{third}'] a.chip").count() == 0
    screenshot(page, "history-tagged.png")

    page.check(f"input[name=ids][value='{third}']")
    page.click("#bulk-delete")
    assert page.get_attribute("#bulk-count", "data-count") == "1"
    page.click("#bulk-confirm")
    page.wait_for_url(f"{live_server}/runs")
    assert "Delete: 1 of 1 runs." in page.locator(".flash").first.text_content()
    assert page.locator(f"tr[data-run-id='{third}']").count() == 0
    page.click("a.chip >> text=keeper")
    assert sorted(
        int(row)
        for row in page.locator("tr[data-run-id]").evaluate_all(
            "rows => rows.map(r => r.dataset.runId)"
        )
    ) == [first, second]
    page.context.close()
    assert_console_clean()
