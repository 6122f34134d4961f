"""Headless Chromium for the dashboard tests: its arguments, a page per tab, the console check, and
where screenshots go."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.support.machine import ROOT

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

# CI keeps this folder as its artifacts (git-ignored).
SCREENSHOTS = ROOT / "artifacts" / "screenshots"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# Everything the pages logged to the browser console: (page URL, type, text).
CONSOLE: list[tuple[str, str, str]] = []


def new_page(browser: Browser) -> Page:
    """A page in a context of its own, so each tab counts as visible and keeps polling; its
    console messages (CSP violations, failed loads) are kept in CONSOLE."""
    page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
    page.set_default_timeout(20_000)
    page.on("console", lambda message: CONSOLE.append((page.url, message.type, message.text)))
    return page


def assert_console_clean() -> None:
    """No page broke its Content-Security-Policy or failed to load anything (a favicon...)."""
    problems = [
        entry
        for entry in CONSOLE
        if "Content Security Policy" in entry[2] or "Failed to load resource" in entry[2]
    ]
    assert problems == [], problems


def mark_loaded(page: Page) -> None:
    """Leave a marker in the window: it survives live updates but not a reload."""
    page.evaluate("window.__sameDocument = true")


def same_document(page: Page) -> bool:
    """Whether the page still holds `mark_loaded`'s marker: it has not reloaded since."""
    return bool(page.evaluate("window.__sameDocument === true"))


def screenshot(page: Page, name: str) -> None:
    """Save the whole page as artifacts/screenshots/NAME."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)
