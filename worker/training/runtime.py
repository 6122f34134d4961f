"""TensorFlow's process-wide setup: thread pools sized to the CPUs this process owns."""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


CGROUP = Path("/sys/fs/cgroup")


def cpu_quota(cgroup: Path = CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (`docker run --cpus`), or None.

    cgroup v2 keeps it in `cpu.max` ("quota period" or "max period"); cgroup v1 in
    `cpu/cpu.cfs_quota_us` (-1 when unlimited) and `cpu/cpu.cfs_period_us`.
    """
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
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


def init_tensorflow(threads: int) -> dict[str, str]:
    """Import TensorFlow with `threads` intra-op threads; return the versions it reports."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import platform

    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        # An epoch is one chain of dependent ops: a second inter-op thread has nothing to run.
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already ran an op in this process: its pools are fixed
        threads = tf.config.threading.get_intra_op_parallelism_threads()
    logger.info("TensorFlow %s ready with %d intra-op threads", tf.__version__, threads)
    return {
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "python_version": platform.python_version(),
    }
