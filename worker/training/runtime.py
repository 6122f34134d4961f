"""TensorFlow's process-wide setup: its thread pools, set once, before any op runs."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)


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
