"""What the compose tests share: whether Docker is here, and which runs ask for the cluster test.

The cluster test (test_cluster_compose.py) builds the image and runs the stack for several minutes,
so a plain `pytest` skips it and says why; `make test-compose` (`pytest tests/compose`) runs it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CLUSTER_TEST = HERE / "test_cluster_compose.py"


def docker_engine_problem() -> str | None:
    """Why `docker compose` cannot run containers here, or None when it can."""
    if shutil.which("docker") is None:
        return "no `docker` command (../shared/docker/setup.sh . installs Docker)"
    for command in (
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        ["docker", "compose", "version"],
    ):
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"`{' '.join(command)}` failed: {exc}"
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-1:]
            return f"`{' '.join(command[:2])}` failed: {' '.join(detail)} (is dockerd running?)"
    return None


def _asked_for(config: pytest.Config, path: Path) -> bool:
    """Whether the command line names `path` or a folder holding it."""
    root = Path(config.invocation_params.dir)
    broad = {root.resolve(), HERE.parent}  # the repository or all of tests/: not a request
    named = {(root / arg.split("::", 1)[0]).resolve() for arg in config.args}
    return any(n == path or (n in path.parents and n not in broad) for n in named)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _asked_for(config, CLUSTER_TEST):
        return
    skip = pytest.mark.skip(
        reason="the compose cluster test runs with `make test-compose` (pytest tests/compose)"
    )
    for item in items:
        if Path(item.path) == CLUSTER_TEST:
            item.add_marker(skip)
