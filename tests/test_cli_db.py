"""`trainyard db` and the refusal to serve or work on an unmigrated database, as subprocesses."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.processes import bare_env, run_trainyard

pytestmark = pytest.mark.e2e


def trainyard(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`trainyard ARGS` on the embedded defaults, with its home folder in `home`."""
    return run_trainyard(*args, env=bare_env(TRAINYARD_HOME=str(home)), timeout=120)


@pytest.mark.parametrize("command", [["web", "--port", "1"], ["worker"]])
def test_web_and_worker_refuse_an_unmigrated_database(tmp_path: Path, command: list[str]) -> None:
    result = trainyard(tmp_path, *command)
    assert result.returncode == 1
    assert "not migrated" in result.stderr and "trainyard db upgrade" in result.stderr


def test_db_upgrade_then_current_then_downgrade(tmp_path: Path) -> None:
    assert "not migrated" in trainyard(tmp_path, "db", "current").stdout
    upgraded = trainyard(tmp_path, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    current = trainyard(tmp_path, "db", "current").stdout
    head = current.split("code: ")[1].strip()
    assert f"database: {head};" in current
    assert trainyard(tmp_path, "db", "downgrade", "base").returncode == 0
    assert "not migrated" in trainyard(tmp_path, "db", "current").stdout
