"""The compose tier, and which runs ask for its cluster tests.

Every test here is marked `compose`. The cluster tests (test_cluster_compose.py,
test_rabbitmq_compose.py) build the image and run the stack for minutes, so a plain `pytest`
skips them and says why; `make test-compose` (`pytest tests/compose`) runs them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CLUSTER_TESTS = {HERE / "test_cluster_compose.py", HERE / "test_rabbitmq_compose.py"}


def _asked_for(config: pytest.Config, path: Path) -> bool:
    """Whether the command line names `path` or a folder holding it."""
    root = Path(config.invocation_params.dir)
    broad = {root.resolve(), HERE.parent}  # the repository or all of tests/: not a request
    named = {(root / arg.split("::", 1)[0]).resolve() for arg in config.args}
    return any(n == path or (n in path.parents and n not in broad) for n in named)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(
        reason="the compose cluster tests run with `make test-compose` (pytest tests/compose)"
    )
    for item in items:
        path = Path(item.path)
        if HERE in path.parents:
            item.add_marker(pytest.mark.compose)
        if path in CLUSTER_TESTS and not _asked_for(config, path):
            item.add_marker(skip)
