"""Same math as `model.fit`: test accuracy of trainyard's graph epochs against Keras' own fit.

    python -m bench.parity [--seeds 4]

For each setting (every optimizer, normalize on and off, a validation split, no dropout, an odd
batch size that leaves a partial last batch), trains the same model with the same hyperparameters
over several seeds both ways, in this process with one TensorFlow thread, and prints the mean test
accuracy of each and the difference in points. The goal: within 0.2 points on average.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.stack import data_dir
from shared.params import Hyperparams

if TYPE_CHECKING:
    from worker.training.data import Mnist

SETTINGS: dict[str, dict[str, object]] = {
    "adam, normalized (the quickstart)": {},
    "adam, raw pixels": {"normalize": False},
    "sgd, lr 0.1": {"optimizer": "sgd", "learning_rate": 0.1, "epochs": 3},
    "rmsprop": {"optimizer": "rmsprop", "epochs": 3},
    "validation split 0.1": {"validation_split": 0.1, "epochs": 3},
    "dropout 0": {"dropout": 0.0, "epochs": 3},
    "batch 37 (a partial last batch)": {"batch_size": 37, "epochs": 3},
}


def keras_fit(params: Hyperparams, data: Mnist) -> float:
    """Test accuracy of the same model trained by Keras' model.fit."""
    import keras

    keras.utils.set_random_seed(params.seed or 0)
    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
                  "rmsprop": keras.optimizers.RMSprop}  # fmt: skip
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(params.hidden_units, activation="relu"),
            keras.layers.Dropout(params.dropout),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=optimizers[params.optimizer](learning_rate=params.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    scale = 255.0 if params.normalize else 1.0
    model.fit(
        data.train_images / scale, data.train_labels,
        epochs=params.epochs, batch_size=params.batch_size,
        validation_split=params.validation_split, verbose=0,
    )  # fmt: skip
    _, accuracy = model.evaluate(data.test_images / scale, data.test_labels, verbose=0)
    return float(accuracy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    from worker.training.data import load_mnist
    from worker.training.model import train
    from worker.training.runtime import init_tensorflow

    init_tensorflow(1)
    data = load_mnist(Path(data_dir()))
    print(f"parity: test accuracy over seeds 1-{args.seeds}, Keras model.fit vs trainyard")
    print("| setting | model.fit | trainyard | difference (points) | time, trainyard / fit |")
    print("|---|---|---|---|---|")
    differences = []
    for name, changes in SETTINGS.items():
        fits, ours, fit_seconds, our_seconds = [], [], 0.0, 0.0
        for seed in range(1, args.seeds + 1):
            params = Hyperparams.model_validate({"seed": seed, **changes})
            began = time.perf_counter()
            fits.append(keras_fit(params, data))
            fit_seconds += time.perf_counter() - began
            began = time.perf_counter()
            ours.append(train(params, data, lambda _: None).test_accuracy or 0.0)
            our_seconds += time.perf_counter() - began
        difference = 100 * (statistics.mean(ours) - statistics.mean(fits))
        differences.append(abs(difference))
        print(
            f"| {name} | {statistics.mean(fits):.4f} | {statistics.mean(ours):.4f} | "
            f"{difference:+.2f} | {our_seconds / fit_seconds:.2f} |",
            flush=True,
        )
    print(f"largest difference: {max(differences):.2f} points (goal: within 0.2)")


if __name__ == "__main__":
    main()
