"""The TensorFlow 2 quickstart's model, trained with a callback that reports every epoch."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from shared.params import Hyperparams
from worker.training.data import Mnist

MISCLASSIFIED_KEPT = 36


@dataclass(frozen=True)
class EpochMetrics:
    """What one epoch reports."""

    epoch: int  # from 1
    loss: float
    accuracy: float
    seconds: float
    val_loss: float | None = None
    val_accuracy: float | None = None


@dataclass
class TrainingResult:
    """How training ended: the test figures and evaluation, or that it was cancelled."""

    cancelled: bool
    test_loss: float | None = None
    test_accuracy: float | None = None
    evaluation: dict[str, Any] = field(default_factory=dict)


def build_model(params: Hyperparams) -> keras.Model:
    """Flatten -> Dense(relu) -> Dropout -> Dense(10) logits, compiled with the chosen optimizer."""
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(params.hidden_units, activation="relu"),
            keras.layers.Dropout(params.dropout),
            keras.layers.Dense(10),
        ]
    )
    optimizers = {
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    model.compile(
        optimizer=optimizers[params.optimizer](learning_rate=params.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


class _Reporter(keras.callbacks.Callback):
    """Report each finished epoch; stop mid-epoch when asked, without reporting that epoch."""

    def __init__(
        self, on_epoch: Callable[[EpochMetrics], None], should_stop: Callable[[], bool]
    ) -> None:
        super().__init__()
        self.on_epoch = on_epoch
        self.should_stop = should_stop
        self.cancelled = False
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.should_stop():
            self.cancelled = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.cancelled:
            return  # the epoch was cut short: its figures are not an epoch's
        logs = logs or {}
        self.on_epoch(
            EpochMetrics(
                epoch=epoch + 1,
                loss=float(logs["loss"]),
                accuracy=float(logs["accuracy"]),
                seconds=time.perf_counter() - self._started,
                val_loss=float(logs["val_loss"]) if "val_loss" in logs else None,
                val_accuracy=float(logs["val_accuracy"]) if "val_accuracy" in logs else None,
            )
        )


def prepare(images: np.ndarray, normalize: bool) -> np.ndarray:
    """Turn uint8 images into float32, divided by 255 when `normalize` is on."""
    images = images.astype(np.float32)
    return images / 255.0 if normalize else images


def evaluate(
    model: keras.Model, data: Mnist, normalize: bool
) -> tuple[float, float, dict[str, Any]]:
    """Score the 10,000 test images in one pass: loss, accuracy, confusion matrix, sample errors."""
    logits = model.predict(prepare(data.test_images, normalize), batch_size=1000, verbose=0)
    labels = data.test_labels.astype(np.int64)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    loss = float(keras.ops.convert_to_numpy(loss_fn(labels, logits)))
    predicted = np.argmax(logits, axis=1)
    confusion = np.bincount(labels * 10 + predicted, minlength=100).reshape(10, 10)
    accuracy = float(np.trace(confusion) / len(labels))
    per_class = (np.diag(confusion) / confusion.sum(axis=1)).round(6)
    wrong = np.flatnonzero(predicted != labels)[:MISCLASSIFIED_KEPT]
    misclassified = [
        {
            "index": int(i),
            "label": int(labels[i]),
            "predicted": int(predicted[i]),
            "image": base64.b64encode(data.test_images[i].tobytes()).decode("ascii"),
        }
        for i in wrong
    ]
    evaluation = {
        "confusion_matrix": confusion.tolist(),
        "per_class_accuracy": per_class.tolist(),
        "misclassified": misclassified,
    }
    return loss, accuracy, evaluation


def train(
    params: Hyperparams,
    data: Mnist,
    on_epoch: Callable[[EpochMetrics], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> TrainingResult:
    """Train and evaluate one run; `on_epoch` is called as each epoch ends."""
    assert params.seed is not None, "a run's seed is drawn at submit time"
    keras.backend.clear_session()
    keras.utils.set_random_seed(params.seed)
    count = params.train_samples
    x = prepare(data.train_images[:count], params.normalize)
    y = data.train_labels[:count]
    model = build_model(params)
    reporter = _Reporter(on_epoch, should_stop)
    model.fit(
        x,
        y,
        epochs=params.epochs,
        batch_size=params.batch_size,
        validation_split=params.validation_split,
        callbacks=[reporter],
        verbose=0,
    )
    if reporter.cancelled:
        return TrainingResult(cancelled=True)
    loss, accuracy, evaluation = evaluate(model, data, params.normalize)
    return TrainingResult(False, loss, accuracy, evaluation)
