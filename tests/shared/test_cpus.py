"""The CPU quota a container grants, read from either cgroup layout (`docker run --cpus`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.cpus import cpu_quota


def v2(root: Path, line: str) -> Path:
    (root / "cpu.max").write_text(line + "\n")
    return root


def v1(root: Path, quota: int, period: int) -> Path:
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


@pytest.mark.parametrize(
    ("line", "cpus"), [("150000 100000", 1.5), ("100000 100000", 1.0), ("max 100000", None)]
)
def test_cgroup_v2_quota(tmp_path: Path, line: str, cpus: float | None) -> None:
    assert cpu_quota(v2(tmp_path, line)) == cpus


@pytest.mark.parametrize(
    ("quota", "period", "cpus"), [(100000, 100000, 1.0), (50000, 100000, 0.5), (-1, 100000, None)]
)
def test_cgroup_v1_quota(tmp_path: Path, quota: int, period: int, cpus: float | None) -> None:
    assert cpu_quota(v1(tmp_path, quota, period)) == cpus


def test_no_cgroup_files_means_no_quota(tmp_path: Path) -> None:
    assert cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").write_text("garbage\n")
    assert cpu_quota(tmp_path) is None
