"""How many CPUs this process may use: its affinity, capped by its cgroup's CPU quota."""

from __future__ import annotations

import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def cpu_quota(cgroup: Path = CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (`docker run --cpus`), or None.

    cgroup v2 keeps it in `cpu.max` ("quota period" or "max period"); cgroup v1 in
    `cpu/cpu.cfs_quota_us` (-1 when unlimited) and `cpu/cpu.cfs_period_us`.
    """
    try:
        quota_text, period_text = (cgroup / "cpu.max").read_text().split()
        return None if quota_text == "max" else int(quota_text) / int(period_text)
    except (OSError, ValueError):
        pass
    try:
        quota = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """Return the CPUs this process may use: its affinity, capped by a cgroup CPU quota."""
    cpus = len(os.sched_getaffinity(0))
    quota = cpu_quota()
    if quota is not None:
        cpus = min(cpus, max(1, int(quota)))
    return max(1, cpus)
