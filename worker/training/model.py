"""One run's training: its data as tensors, epochs on the process's network, a checkpoint after
each, the evaluation on the test set, and the final model as a `.keras` file."""

from __future__ import annotations

import base64
import io
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import tensorflow as tf

from shared.domain.lease import EpochRecord
from shared.domain.params import Hyperparams
from worker.training.data import Mnist
from worker.training.graph import INPUT_DIM, Network

MISCLASSIFIED_KEPT = 36
# What a process keeps between runs: compiled networks by (width, optimizer), and the images as
# float32 tensors by scaling (each 188 MB for the 60,000 training images).
NETWORKS_KEPT = 4
TENSORS_KEPT = 4

V = TypeVar("V")


class _Cache(OrderedDict[Hashable, Any]):
    """A small least-recently-used cache."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_or_make(self, key: Hashable, make: Callable[[], V]) -> V:
        if key in self:
            self.move_to_end(key)
        else:
            self[key] = make()
            while len(self) > self.size:
                self.popitem(last=False)
        value: V = self[key]
        return value


_networks = _Cache(NETWORKS_KEPT)
_tensors = _Cache(TENSORS_KEPT)


def _images(data: Mnist, split: str, normalize: bool) -> tf.Tensor:
    """All of a split's images as float32 [N, 784], divided by 255 when `normalize` is on."""

    def make() -> tf.Tensor:
        images = getattr(data, f"{split}_images").reshape(-1, INPUT_DIM).astype(np.float32)
        return tf.constant(images / 255.0 if normalize else images)

    return _tensors.get_or_make((data.sha256, split, normalize), make)


class Job:
    """Training one run in this process."""

    def __init__(self, params: Hyperparams, data: Mnist) -> None:
        assert params.seed is not None, "a run's seed is drawn at submit time"
        self.params, self.data = params, data
        self.network = _networks.get_or_make(
            (params.hidden_units, params.optimizer),
            lambda: Network(params.hidden_units, params.optimizer),
        )
        self.network.reset(params.seed)
        images = _images(data, "train", params.normalize)[: params.train_samples]
        labels = tf.constant(data.train_labels[: params.train_samples].astype(np.int32))
        # Keras' validation_split: the last part of the samples, taken before any shuffling.
        split = int(params.train_samples * (1.0 - params.validation_split))
        self.train_x, self.train_y = images[:split], labels[:split]
        self.val_x, self.val_y = images[split:], labels[split:]

    def request_stop(self) -> None:
        """From any thread: the running epoch ends after its current batch."""
        self.network.request_stop()

    def train_epoch(self, epoch: int) -> EpochRecord | None:
        """Train epoch `epoch` (from 1); None when a stop request cut it short."""
        started = time.perf_counter()
        totals = self.network.train_epoch(
            self.train_x,
            self.train_y,
            epoch=epoch,
            seed=self.params.seed or 0,
            batch_size=self.params.batch_size,
            learning_rate=self.params.learning_rate,
            dropout=self.params.dropout,
        )
        if totals.samples < int(self.train_x.shape[0]):
            return None
        val_loss = val_accuracy = None
        if self.params.validation_split > 0:
            val_loss, val_accuracy, _ = self._score(self.val_x, self.val_y.numpy())
        return EpochRecord(
            epoch=epoch,
            loss=totals.loss_sum / totals.samples,
            accuracy=totals.correct / totals.samples,
            seconds=time.perf_counter() - started,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
        )

    def train_epochs(
        self,
        on_epoch: Callable[[EpochRecord], None],
        should_stop: Callable[[], bool] = lambda: False,
        first: int = 1,
    ) -> bool:
        """Train from epoch `first` to the last, calling `on_epoch` as each one ends; return False
        when a stop cut training short (`should_stop` before an epoch, `request_stop` within one)."""
        for epoch in range(first, self.params.epochs + 1):
            record = None if should_stop() else self.train_epoch(epoch)
            if record is None:
                return False
            on_epoch(record)
        return True

    def state(self, epoch: int, max_bytes: int) -> bytes | None:
        """A checkpoint after `epoch`: weights, optimizer slots and step count; None when larger
        than `max_bytes` (then a resumed run starts over)."""
        variables = self.network.variables()
        size = sum(v.shape.num_elements() * v.dtype.size for v in variables)
        if size > max_bytes:
            return None
        out = io.BytesIO()
        arrays = {f"v{i}": v.numpy() for i, v in enumerate(variables)}
        np.savez(out, epoch=np.int64(epoch), **arrays)
        return out.getvalue()

    def restore(self, state: bytes) -> int:
        """Load a checkpoint; return the epoch it was taken after."""
        with np.load(io.BytesIO(state)) as saved:
            for i, variable in enumerate(self.network.variables()):
                variable.assign(saved[f"v{i}"])
            return int(saved["epoch"])

    def _score(self, images: tf.Tensor, labels: np.ndarray) -> tuple[float, float, np.ndarray]:
        return _score_logits(self.network.logits(images), labels)

    def evaluate(self) -> tuple[float, float, dict[str, Any]]:
        """Score the 10,000 test images in one pass: loss, accuracy, confusion matrix, sample errors."""
        images = _images(self.data, "test", self.params.normalize)
        return _evaluation(self.data, self.network.logits(images))

    def keras_file(self) -> bytes:
        """The trained model as a `.keras` file that takes raw 28x28 pixels (0-255): the pixel
        scaling of the run is its first layer, so `load_model(...).predict(images)` just works.
        It is compiled with the run's loss and optimizer, the optimizer's state as training left
        it, so `fit` goes on where the run stopped."""
        import keras

        optimizers = {
            "adam": keras.optimizers.Adam,
            "rmsprop": keras.optimizers.RMSprop,
            "sgd": keras.optimizers.SGD,
        }

        layers: list[Any] = [keras.Input(shape=(28, 28))]
        if self.params.normalize:
            layers.append(keras.layers.Rescaling(1.0 / 255))
        layers += [
            keras.layers.Flatten(),
            keras.layers.Dense(self.params.hidden_units, activation="relu"),
            keras.layers.Dropout(self.params.dropout),
            keras.layers.Dense(10),
        ]
        model = keras.Sequential(layers, name=f"trainyard_run_seed_{self.params.seed}")
        model.set_weights(self.network.weights())
        model.compile(
            optimizer=optimizers[self.params.optimizer](learning_rate=self.params.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        optimizer = model.optimizer
        optimizer.build(model.trainable_variables)
        steps, slots = self.network.keras_optimizer_state()
        optimizer.iterations.assign(steps)
        # Keras lists its step count and learning rate first, then the slots.
        for variable, value in zip(optimizer.variables[2:], slots, strict=True):
            variable.assign(value)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.keras"
            model.save(path)
            return path.read_bytes()


def _score_logits(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float, np.ndarray]:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = float(-log_softmax[np.arange(len(labels)), labels].mean())
    predicted = logits.argmax(axis=1)
    return loss, float((predicted == labels).mean()), predicted


def _evaluation(data: Mnist, logits: np.ndarray) -> tuple[float, float, dict[str, Any]]:
    labels = data.test_labels.astype(np.int64)
    loss, accuracy, predicted = _score_logits(logits, labels)
    confusion = np.bincount(labels * 10 + predicted, minlength=100).reshape(10, 10)
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


def evaluate_keras_file(keras_file: bytes, data: Mnist) -> tuple[float, float, dict[str, Any]]:
    """Score a stored `.keras` model (it takes raw pixels) on the 10,000 test images: what a
    search reads once, for the configuration it chose."""
    import keras

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        path.write_bytes(keras_file)
        model = keras.models.load_model(path)
    images = data.test_images.astype(np.float32)
    logits = np.asarray(model.predict(images, batch_size=1000, verbose=0))
    return _evaluation(data, logits)
