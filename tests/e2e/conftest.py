"""The end-to-end tier: every test here runs real trainyard processes (a worker, gunicorn, the
CLI, a cluster) or servers of its own, so each is marked `e2e` (`make test-e2e` runs them)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)
