"""TensorFlow's process-wide setup: thread pools sized to the CPUs this process owns."""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def available_cpus() -> int:
    """Return the CPUs this process may use: its affinity, capped by a cgroup CPU quota."""
    cpus = len(os.sched_getaffinity(0))
    quota_file = Path("/sys/fs/cgroup/cpu.max")
    try:
        quota, period = quota_file.read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def init_tensorflow(threads: int) -> dict[str, str]:
    """Import TensorFlow with `threads` intra-op threads; return the versions it reports."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import platform

    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    logger.info("TensorFlow %s ready with %d intra-op threads", tf.__version__, threads)
    return {
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "python_version": platform.python_version(),
    }
