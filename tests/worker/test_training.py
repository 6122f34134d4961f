"""Training itself, in this process: real TensorFlow on a small slice of MNIST."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from shared.domain.lease import EpochRecord
from shared.domain.params import Hyperparams
from tests.support.machine import mnist_dir
from worker.training.data import Mnist, load_mnist

if TYPE_CHECKING:
    from worker.training.model import Job


@pytest.fixture(scope="module")
def mnist() -> Mnist:
    from worker.training.runtime import init_tensorflow

    init_tensorflow(2)
    return load_mnist(mnist_dir())


def trained(
    params: Hyperparams,
    mnist: Mnist,
    on_epoch: Callable[[EpochRecord], None] = lambda _: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[Job, bool]:
    """A job trained through the worker's own epoch loop; and whether it ran every epoch."""
    from worker.training.model import Job

    job = Job(params, mnist)
    return job, job.train_epochs(on_epoch, should_stop)


def test_every_epoch_is_reported_as_it_ends(mnist: Mnist) -> None:
    seen: list[EpochRecord] = []
    params = Hyperparams(epochs=3, train_samples=1000, validation_split=0.2, seed=7)
    job, completed = trained(params, mnist, seen.append)
    assert [m.epoch for m in seen] == [1, 2, 3]
    assert all(m.val_loss is not None and m.val_accuracy is not None for m in seen)
    assert seen[-1].loss < seen[0].loss
    assert completed
    _, accuracy, _ = job.evaluate()
    assert accuracy > 0.6


def test_evaluation_is_consistent_with_the_test_accuracy(mnist: Mnist) -> None:
    job, _ = trained(Hyperparams(epochs=1, train_samples=500, seed=3), mnist)
    _, accuracy, evaluation = job.evaluate()
    matrix = np.array(evaluation["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 10000
    assert np.trace(matrix) / 10000 == pytest.approx(accuracy)
    assert matrix.sum(axis=1).tolist() == np.bincount(mnist.test_labels).tolist()
    per_class = evaluation["per_class_accuracy"]
    assert per_class == pytest.approx((np.diag(matrix) / matrix.sum(axis=1)).tolist(), abs=1e-6)
    for sample in evaluation["misclassified"]:
        assert sample["label"] == int(mnist.test_labels[sample["index"]])
        assert sample["label"] != sample["predicted"]


def test_the_same_seed_gives_the_same_run(mnist: Mnist) -> None:
    params = Hyperparams(epochs=1, train_samples=500, seed=11)
    first: list[EpochRecord] = []
    second: list[EpochRecord] = []
    trained(params, mnist, first.append)
    trained(params, mnist, second.append)
    assert first[0].loss == pytest.approx(second[0].loss, rel=1e-5)


def test_a_stop_request_ends_training_without_reporting_the_cut_epoch(mnist: Mnist) -> None:
    seen: list[EpochRecord] = []
    _, completed = trained(
        Hyperparams(epochs=5, train_samples=1000, seed=1),
        mnist,
        seen.append,
        should_stop=lambda: len(seen) >= 1,
    )
    assert not completed
    assert [m.epoch for m in seen] == [1]


@pytest.mark.parametrize(("optimizer", "learning_rate"), [("sgd", 0.1), ("rmsprop", 0.001)])
def test_each_optimizer_trains(mnist: Mnist, optimizer: str, learning_rate: float) -> None:
    params = Hyperparams(
        epochs=2, train_samples=1000, optimizer=optimizer, learning_rate=learning_rate, seed=2
    )
    job, _ = trained(params, mnist)
    _, accuracy, _ = job.evaluate()
    assert accuracy > 0.3


# Which of the network's (weight, slot) pairs Keras' optimizer holds, in its order: Adam's
# momentum and velocity per weight, RMSprop's velocity alone, nothing for SGD.
KERAS_ORDER = {
    "adam": [(w, s) for w in range(4) for s in (0, 1)],
    "rmsprop": [(w, 0) for w in range(4)],
    "sgd": [],
}


@pytest.mark.parametrize("optimizer", sorted(KERAS_ORDER))
def test_the_model_file_holds_the_run_s_optimizer_as_training_left_it(
    mnist: Mnist, optimizer: str, tmp_path: Path
) -> None:
    """It loads without a warning, and `fit` on it goes on with the run's optimizer, learning
    rate, step count and slots."""
    import keras

    from worker.training.model import Job

    params = Hyperparams(
        epochs=1, train_samples=500, batch_size=50, optimizer=optimizer, learning_rate=0.01, seed=5
    )
    job = Job(params, mnist)
    assert job.train_epoch(1) is not None
    path = tmp_path / "run.keras"
    path.write_bytes(job.keras_file())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = keras.models.load_model(path)
    loaded = model.optimizer
    assert type(loaded).__name__.lower() == optimizer
    assert float(loaded.learning_rate.numpy()) == pytest.approx(0.01)
    assert int(loaded.iterations.numpy()) == 10  # 500 images in batches of 50
    slots = loaded.variables[2:]
    assert len(slots) == len(KERAS_ORDER[optimizer])
    for variable, (weight, slot) in zip(slots, KERAS_ORDER[optimizer], strict=True):
        ours = job.network.slots[weight][slot].numpy()
        assert np.abs(ours).sum() > 0  # trained state, not a fresh optimizer's zeros
        np.testing.assert_array_equal(variable.numpy(), ours)
