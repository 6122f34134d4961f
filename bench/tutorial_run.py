"""Run the TensorFlow quickstart (bench/tutorial/quickstart.py) as written, and time it.

    python -m bench.tutorial_run [--raw]

Prints one JSON line: the whole run's seconds (TensorFlow's import included), each epoch's
seconds, and the test accuracy and loss `model.evaluate` returned. See bench/tutorial/README.md
for the two changes made from outside the script (no download, an epoch timer).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()  # before TensorFlow's import: the script's own first line

SCRIPT = Path(__file__).resolve().parent / "tutorial" / "quickstart.py"
NORMALIZE_LINE = "x_train, x_test = x_train / 255.0, x_test / 255.0\n"


def main() -> None:
    """Run the quickstart with MNIST from TRAINYARD_DATA_DIR; print what it measured."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", action="store_true", help="without the / 255.0 line")
    args = parser.parse_args()
    source = SCRIPT.read_text()
    assert NORMALIZE_LINE in source
    if args.raw:
        source = source.replace(NORMALIZE_LINE, "")

    import keras
    import tensorflow as tf

    from shared.config import Settings
    from worker.training.data import load_mnist, locate_mnist

    def load_data() -> tuple:  # instead of the download
        data = load_mnist(locate_mnist(Settings.from_env()))
        return (data.train_images, data.train_labels), (data.test_images, data.test_labels)

    tf.keras.datasets.mnist.load_data = load_data
    epochs: list[float] = []
    scores: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            epochs.append(time.perf_counter() - self.began)

    fit, evaluate = keras.Model.fit, keras.Model.evaluate

    def timed_fit(self: keras.Model, *a: Any, **kw: Any) -> Any:
        return fit(self, *a, **{**kw, "callbacks": [*kw.get("callbacks", []), Timer()]})

    def kept_evaluate(self: keras.Model, *a: Any, **kw: Any) -> Any:
        scores[:] = evaluate(self, *a, **kw)
        return scores

    keras.Model.fit, keras.Model.evaluate = timed_fit, kept_evaluate
    exec(compile(source, str(SCRIPT), "exec"), {"__name__": "__main__"})
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - STARTED,
                "epochs": epochs,
                "test_loss": scores[0],
                "test_accuracy": scores[1],
                "normalize": not args.raw,
            }
        )
    )


if __name__ == "__main__":
    main()
