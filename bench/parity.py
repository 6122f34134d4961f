"""Same math as `model.fit`: test accuracy of trainyard's graph epochs against Keras' own fit.

    python -m bench.parity [--seeds 6] [--only "adam, raw pixels" ...]

For each setting (every optimizer, normalize on and off, a validation split, no dropout, an odd
batch size that leaves a partial last batch), trains the same model with the same hyperparameters
over several seeds both ways, in this process with one TensorFlow thread, and prints the mean test
accuracy of each, the mean difference in points with its 95% interval, and the time ratio. The
goal: within 0.2 points on average.

The comparison is paired (common random numbers): for each seed, Keras starts from trainyard's
initial weights, fits the same shuffled order of batches (`model.fit` one epoch at a time on
the rows in trainyard's order, `shuffle=False`) and its Dropout layer, seeded with trainyard's
`dropout_seed`, draws the same masks; what is left to differ is the arithmetic (the order of
float32 sums). Unpaired, the seed-to-seed spread alone (about 0.5 points with raw pixels) would
hide a difference of 0.2 points at any affordable number of seeds.
tests/worker/test_graph.py checks the same weight for weight on a small slice.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.stack import data_dir
from shared.domain.params import Hyperparams
from shared.domain.stats import describe

if TYPE_CHECKING:
    import numpy as np

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


def keras_fit(params: Hyperparams, data: Mnist, initial: list[np.ndarray]) -> float:
    """Test accuracy of the same model trained by Keras' model.fit from `initial` weights, on
    trainyard's batch order."""
    import keras

    from worker.training.graph import batch_order, dropout_seed

    seed = params.seed or 0
    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
                  "rmsprop": keras.optimizers.RMSprop}  # fmt: skip
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(params.hidden_units, activation="relu"),
            keras.layers.Dropout(params.dropout, seed=dropout_seed(seed)),  # trainyard's masks
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=optimizers[params.optimizer](learning_rate=params.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.set_weights(initial)
    scale = 255.0 if params.normalize else 1.0
    images = data.train_images[: params.train_samples] / scale
    labels = data.train_labels[: params.train_samples]
    # Keras' validation_split: the last part, before any shuffling (as trainyard does).
    split = int(params.train_samples * (1.0 - params.validation_split))
    validation = (images[split:], labels[split:]) if split < params.train_samples else None
    for epoch in range(1, params.epochs + 1):
        order = batch_order(split, epoch=epoch, seed=seed)
        model.fit(
            images[order], labels[order], batch_size=params.batch_size, epochs=1,
            shuffle=False, validation_data=validation, verbose=0,
        )  # fmt: skip
    _, accuracy = model.evaluate(data.test_images / scale, data.test_labels, verbose=0)
    return float(accuracy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument(
        "--only", action="append", choices=list(SETTINGS), help="a setting to run (repeatable)"
    )
    args = parser.parse_args()
    settings = {name: SETTINGS[name] for name in args.only or SETTINGS}
    from worker.training.data import load_mnist
    from worker.training.model import Job
    from worker.training.runtime import init_tensorflow

    init_tensorflow(1)
    data = load_mnist(Path(data_dir()))
    print(f"parity: test accuracy over seeds 1-{args.seeds}, Keras model.fit vs trainyard, paired")
    print(
        "| setting | model.fit | trainyard | difference (points) | 95% interval "
        "| time, trainyard / fit |"
    )
    print("|---|---|---|---|---|---|")
    differences = []
    for name, changes in settings.items():
        fits, ours, fit_seconds, our_seconds = [], [], 0.0, 0.0
        for seed in range(1, args.seeds + 1):
            params = Hyperparams.model_validate({"seed": seed, **changes})
            initial = Job(params, data).network.weights()
            began = time.perf_counter()
            fits.append(keras_fit(params, data, initial))
            fit_seconds += time.perf_counter() - began
            began = time.perf_counter()
            job = Job(params, data)
            job.train_epochs(lambda _: None)
            ours.append(job.evaluate()[1])
            our_seconds += time.perf_counter() - began
        paired = describe([100 * (a - b) for a, b in zip(ours, fits, strict=True)])
        low, high = paired.ci95 or (float("nan"), float("nan"))
        differences.append(abs(paired.mean or 0.0))
        print(
            f"| {name} | {statistics.mean(fits):.4f} | {statistics.mean(ours):.4f} | "
            f"{paired.mean:+.2f} | [{low:+.2f}, {high:+.2f}] | {our_seconds / fit_seconds:.2f} |",
            flush=True,
        )
    print(f"largest mean difference: {max(differences):.2f} points (goal: within 0.2)")


if __name__ == "__main__":
    main()
