"""trainyard's graph epoch is Keras' training step for step: the same weights after the same batches.

Both start from the same weights, visit the same batches in the same order and, with dropout on,
draw the same masks (Keras' Dropout seeded with trainyard's `dropout_seed`); after two epochs every
weight agrees to float32 rounding, for each optimizer, normalized or not, with and without
dropout, and a batch size that leaves a partial last batch. bench/parity.py measures the same
agreement in test accuracy at full size through `model.fit`.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.machine import mnist_dir
from worker.training.data import Mnist, load_mnist

ROWS, BATCH, EPOCHS, SEED = 203, 37, 2, 5  # 6 batches an epoch, the last one of 18 rows
OPTIMIZERS = [("adam", 0.001), ("sgd", 0.1), ("rmsprop", 0.001)]


@pytest.fixture(scope="module")
def mnist() -> Mnist:
    return load_mnist(mnist_dir())


def keras_model(optimizer: str, learning_rate: float, hidden: int, dropout: float, seed: int):
    import keras

    from worker.training.graph import dropout_seed

    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
                  "rmsprop": keras.optimizers.RMSprop}  # fmt: skip
    model = keras.Sequential(
        [
            keras.Input(shape=(784,)),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dropout(dropout, seed=dropout_seed(seed)),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=optimizers[optimizer](learning_rate=learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


@pytest.mark.parametrize(("optimizer", "learning_rate"), OPTIMIZERS)
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_two_epochs_match_keras_train_on_batch(
    mnist: Mnist, optimizer: str, learning_rate: float, normalize: bool, dropout: float
) -> None:
    import tensorflow as tf

    from worker.training.graph import Network, batch_order

    scale = 255.0 if normalize else 1.0
    images = mnist.train_images[:ROWS].reshape(ROWS, 784).astype(np.float32) / scale
    labels = mnist.train_labels[:ROWS].astype(np.int32)
    network = Network(32, optimizer)
    network.reset(SEED)
    model = keras_model(optimizer, learning_rate, 32, dropout, SEED)
    initial = network.weights()
    model.set_weights(initial)

    losses = []
    for epoch in range(1, EPOCHS + 1):
        totals = network.train_epoch(
            tf.constant(images), tf.constant(labels), epoch=epoch, seed=SEED,
            batch_size=BATCH, learning_rate=learning_rate, dropout=dropout,
        )  # fmt: skip
        assert totals.steps == 6 and totals.samples == ROWS
        order = batch_order(ROWS, epoch=epoch, seed=SEED)
        assert sorted(order) == list(range(ROWS)), "each row once per epoch"
        loss_sum = 0.0
        for start in range(0, ROWS, BATCH):
            rows = order[start : start + BATCH]
            loss = model.train_on_batch(images[rows], labels[rows])
            loss_sum += float(loss) * len(rows)
        losses.append((totals.loss_sum / ROWS, loss_sum / ROWS))

    # Every weight ends where Keras' does, to within 1% of how far training moved it: a different
    # update rule (a missing bias correction, another epsilon, the mean loss of the wrong rows)
    # lands as far off as the training moved, rounding of float32 sums far less.
    for before, ours, theirs in zip(initial, network.weights(), model.get_weights(), strict=True):
        moved = float(np.abs(theirs - before).max())
        assert moved > 1e-4, "the epochs did not train"
        assert float(np.abs(ours - theirs).max()) <= 0.01 * moved, optimizer
    # Keras reports the mean of its batch losses; the first epoch's agrees.
    assert losses[0][0] == pytest.approx(losses[0][1], rel=1e-3)
