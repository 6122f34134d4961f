"""The quickstart's network as TensorFlow graph code: one whole epoch is one `tf.function` call.

Flatten(784) -> Dense(H, relu) -> Dropout(rate) -> Dense(10) logits, the mean sparse softmax
cross-entropy of each batch, and Keras 3's Adam, SGD or RMSprop with their defaults: the same
model, batches and update rule as `model.fit`, at a fraction of its time on a CPU, because
- an epoch is a `tf.while_loop` over batches inside one graph call: no Python per batch, no
  tf.data pipeline, no per-batch metric bookkeeping;
- the backward pass is written out (softmax minus one-hot comes with the fused cross-entropy
  kernel) and the updates are the fused `ResourceApply*` kernels;
- the graph is traced once per process for a width and optimizer; a new run only re-initialises
  the variables, since batch size, learning rate, dropout, epoch and seed are tensors.

The epoch's permutation is keyed on (seed, epoch) and each dropout mask on (seed, optimizer step)
with stateless random numbers, so an epoch depends only on the state at its start: a run resumed
from the checkpoint of its last finished epoch goes on exactly as it would have. The masks are
Keras' own: its Dropout layer, seeded with `dropout_seed(seed)`, draws the same ones.

The loop re-reads a `stop` variable before each batch; another thread assigns it to end the
epoch after the current batch (cancel, a lost lease, a worker shutting down).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

INPUT_DIM = 784
CLASSES = 10
# Keras 3's optimizer defaults.
ADAM_BETA_1, ADAM_BETA_2, RMSPROP_RHO, EPSILON = 0.9, 0.999, 0.9, 1e-7
SLOTS = {"adam": ("m", "v"), "rmsprop": ("ms", "mom"), "sgd": ()}
# The slots Keras' optimizer of the same name keeps for each weight, in its order (Adam's
# momentum and velocity; RMSprop without momentum keeps only its velocity, our `ms`).
KERAS_SLOTS = {"adam": ("m", "v"), "rmsprop": ("ms",), "sgd": ()}
# Tags folded into the run's seed, so the random streams never overlap.
_INIT, _EPOCH, _PERMUTATION, _DROPOUT = 1, 2, 3, 4
_ALG = "philox"  # explicit, so the streams do not depend on the device
# Keras folds a seed into int32 modulo this (`_cast_seed` in its TensorFlow backend).
_KERAS_SEED_MOD = 2**31 - 2


def _fold(key: tf.Tensor, data: int | tf.Tensor) -> tf.Tensor:
    return tf.random.experimental.stateless_fold_in(key, tf.cast(data, tf.int64), alg=_ALG)


def _seed_key(seed: tf.Tensor) -> tf.Tensor:
    return tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])


def _epoch_key(seed: tf.Tensor, epoch: tf.Tensor) -> tf.Tensor:
    return _fold(_fold(_seed_key(seed), _EPOCH), epoch)


def _dropout_seed(seed: tf.Tensor) -> tf.Tensor:
    return tf.math.floormod(_fold(_seed_key(seed), _DROPOUT)[0], _KERAS_SEED_MOD)


def dropout_seed(seed: int) -> int:
    """The seed of a run's dropout stream. A Keras Dropout layer whose seed generator starts at
    `[dropout_seed(seed), 0]` draws, at each training step, the mask this run draws at that step."""
    return int(_dropout_seed(tf.constant(seed, tf.int64)).numpy())


def _dropout_mask(shape: tf.Tensor, seed: tf.Tensor, step: tf.Tensor, rate: tf.Tensor) -> tf.Tensor:
    """Keras' Dropout on TensorFlow, draw for draw: `stateless_dropout`'s uniform numbers seeded
    [seed, step] (its seed generator's state at the run's step-th update), units kept where
    u >= rate and scaled by 1 / (1 - rate)."""
    key = tf.cast(tf.stack([seed, tf.math.floormod(step, _KERAS_SEED_MOD)]), tf.int32)
    u = tf.random.stateless_uniform(shape, key)  # the device's default: Philox on a CPU
    return tf.where(u >= rate, 1.0 / (1.0 - rate), 0.0)


def _order(n: tf.Tensor, epoch_key: tf.Tensor) -> tf.Tensor:
    """The epoch's permutation of the n training rows."""
    return tf.random.experimental.stateless_shuffle(
        tf.range(n), seed=_fold(epoch_key, _PERMUTATION), alg=_ALG
    )


def batch_order(n: int, *, epoch: int, seed: int) -> np.ndarray:
    """The order in which `train_epoch` visits n rows in this epoch of a run with this seed."""
    key = _epoch_key(tf.constant(seed, tf.int64), tf.constant(epoch, tf.int64))
    order: np.ndarray = _order(tf.constant(n), key).numpy()
    return order


@dataclass(frozen=True)
class EpochTotals:
    """What one call of the epoch function did."""

    steps: int
    samples: int
    loss_sum: float
    correct: int


class Network:
    """The variables, optimizer slots and compiled functions of one width and optimizer."""

    def __init__(self, hidden: int, optimizer: str) -> None:
        self.hidden, self.optimizer = hidden, optimizer
        shapes = {
            "w1": (INPUT_DIM, hidden),
            "b1": (hidden,),
            "w2": (hidden, CLASSES),
            "b2": (CLASSES,),
        }
        self.params = tuple(tf.Variable(tf.zeros(s), name=n) for n, s in shapes.items())
        self.slots = tuple(
            tuple(
                tf.Variable(tf.zeros(s), trainable=False, name=f"{n}_{k}") for k in SLOTS[optimizer]
            )
            for n, s in shapes.items()
        )
        # Optimizer steps so far (Keras' `optimizer.iterations`; Adam's t is this + 1).
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        # Re-read before every batch: True ends the running epoch after its current batch.
        self.stop = tf.Variable(False, trainable=False, name="stop")
        scalar = tf.TensorSpec([], tf.float32)
        self._epoch = {
            dropout: tf.function(
                functools.partial(self._epoch_graph, use_dropout=dropout),
                input_signature=[
                    tf.TensorSpec([None, INPUT_DIM], tf.float32),  # images
                    tf.TensorSpec([None], tf.int32),  # labels
                    tf.TensorSpec([], tf.int32),  # batch size
                    scalar,  # learning rate
                    scalar,  # dropout rate
                    tf.TensorSpec([], tf.int64),  # epoch
                    tf.TensorSpec([], tf.int64),  # seed
                ],
                autograph=False,
            )
            for dropout in (False, True)  # without dropout the graph draws no random numbers
        }
        self._reset = tf.function(
            self._reset_graph, input_signature=[tf.TensorSpec([], tf.int64)], autograph=False
        )
        self._predict = tf.function(
            self._predict_graph,
            input_signature=[tf.TensorSpec([None, INPUT_DIM], tf.float32)],
            autograph=False,
        )

    def reset(self, seed: int) -> None:
        """Start a new run: Glorot-uniform kernels drawn from `seed`, zero biases and slots."""
        self._reset(tf.constant(seed, tf.int64))

    def request_stop(self) -> None:
        """From any thread: the running (or next) epoch ends after its current batch."""
        self.stop.assign(True)

    def train_epoch(
        self,
        images: tf.Tensor,
        labels: tf.Tensor,
        *,
        epoch: int,
        seed: int,
        batch_size: int,
        learning_rate: float,
        dropout: float,
    ) -> EpochTotals:
        """Train one shuffled epoch, the last partial batch kept; stops early on `stop`."""
        steps, loss_sum, correct = self._epoch[dropout > 0](
            images,
            labels,
            tf.constant(batch_size, tf.int32),
            tf.constant(learning_rate, tf.float32),
            tf.constant(dropout, tf.float32),
            tf.constant(epoch, tf.int64),
            tf.constant(seed, tf.int64),
        )
        samples = min(int(steps) * batch_size, int(images.shape[0]))
        return EpochTotals(int(steps), samples, float(loss_sum), int(correct))

    def logits(self, images: tf.Tensor) -> np.ndarray:
        """Logits of many images at once, without dropout."""
        logits: np.ndarray = self._predict(images).numpy()
        return logits

    def variables(self) -> list[tf.Variable]:
        """Everything a checkpoint holds, in a fixed order."""
        return [*self.params, *(slot for slots in self.slots for slot in slots), self.iterations]

    def weights(self) -> list[np.ndarray]:
        """The layer weights alone: w1, b1, w2, b2."""
        return [p.numpy() for p in self.params]

    def keras_optimizer_state(self) -> tuple[int, list[np.ndarray]]:
        """The step count and the slots as Keras' optimizer of the same name holds them: per
        weight in layer order, the slots of `KERAS_SLOTS`."""
        kept = KERAS_SLOTS[self.optimizer]
        slots = [
            slot.numpy()
            for per_weight in self.slots
            for kind, slot in zip(SLOTS[self.optimizer], per_weight, strict=True)
            if kind in kept
        ]
        return int(self.iterations.numpy()), slots

    # Graph code.

    def _reset_graph(self, seed: tf.Tensor) -> None:
        key = _fold(_seed_key(seed), _INIT)
        w1, b1, w2, b2 = self.params
        for layer, kernel in enumerate((w1, w2)):
            fan_in, fan_out = kernel.shape
            limit = math.sqrt(6.0 / (fan_in + fan_out))  # Keras' glorot_uniform
            kernel.assign(
                tf.random.stateless_uniform(
                    kernel.shape, _fold(key, layer), minval=-limit, maxval=limit, alg=_ALG
                )
            )
        for variable in (b1, b2, *(slot for slots in self.slots for slot in slots)):
            variable.assign(tf.zeros_like(variable))
        self.iterations.assign(0)
        self.stop.assign(False)

    def _epoch_graph(
        self,
        images: tf.Tensor,
        labels: tf.Tensor,
        batch_size: tf.Tensor,
        learning_rate: tf.Tensor,
        dropout: tf.Tensor,
        epoch: tf.Tensor,
        seed: tf.Tensor,
        use_dropout: bool,
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        n = tf.shape(images)[0]
        steps = (n + batch_size - 1) // batch_size  # the last partial batch too, as Keras does
        epoch_key = _epoch_key(seed, epoch)
        order = _order(n, epoch_key)
        dropout_seed = _dropout_seed(seed)
        first = self.iterations.read_value()

        def more(step: tf.Tensor, loss_sum: tf.Tensor, correct: tf.Tensor) -> tf.Tensor:
            return tf.logical_and(step < steps, tf.logical_not(self.stop.read_value()))

        def batch(
            step: tf.Tensor, loss_sum: tf.Tensor, correct: tf.Tensor
        ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            start = step * batch_size
            size = tf.minimum(batch_size, n - start)
            rows = tf.slice(order, [start], [size])
            x, y = tf.gather(images, rows), tf.gather(labels, rows)
            before = first + tf.cast(step, tf.int64)  # updates before this batch's
            mask = None
            if use_dropout:
                mask = _dropout_mask(tf.stack([size, self.hidden]), dropout_seed, before, dropout)
            loss, hits = self._step(x, y, mask, learning_rate, before + 1)
            return step + 1, loss_sum + tf.cast(loss, tf.float64), correct + hits

        done, loss_sum, correct = tf.while_loop(
            more,
            batch,
            (tf.constant(0), tf.constant(0.0, tf.float64), tf.constant(0)),
            parallel_iterations=1,  # each batch reads the previous update
        )
        self.iterations.assign_add(tf.cast(done, tf.int64))
        return done, loss_sum, correct

    def _forward(self, x: tf.Tensor, mask: tf.Tensor | None) -> tuple[tf.Tensor, ...]:
        w1, b1, w2, b2 = self.params
        # MatMul + BiasAdd + Relu: Grappler fuses them into one kernel.
        hidden = tf.nn.relu(tf.nn.bias_add(tf.matmul(x, w1), b1))
        dropped = hidden if mask is None else hidden * mask
        return tf.nn.bias_add(tf.matmul(dropped, w2), b2), hidden, dropped

    def _step(
        self, x: tf.Tensor, y: tf.Tensor, mask: tf.Tensor | None, lr: tf.Tensor, t: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Forward, backward and update for one batch; returns (sum of losses, hits)."""
        w2 = self.params[2]
        logits, hidden, dropped = self._forward(x, mask)
        # The fused kernel's second output is softmax(logits) - onehot(labels).
        losses, dlogits = tf.raw_ops.SparseSoftmaxCrossEntropyWithLogits(features=logits, labels=y)
        g_logits = dlogits / tf.cast(tf.shape(x)[0], tf.float32)  # of the batch's mean loss
        g_hidden = tf.matmul(g_logits, w2, transpose_b=True)
        if mask is not None:
            g_hidden = g_hidden * mask
        # relu'(z) is [relu(z) > 0], so the activation serves as ReluGrad's "features".
        g_z = tf.raw_ops.ReluGrad(gradients=g_hidden, features=hidden)
        grads = (
            tf.matmul(x, g_z, transpose_a=True),
            tf.reduce_sum(g_z, axis=0),
            tf.matmul(dropped, g_logits, transpose_a=True),
            tf.reduce_sum(g_logits, axis=0),
        )
        hits = tf.reduce_sum(
            tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), y), tf.int32)
        )
        self._apply(grads, lr, t)
        return tf.reduce_sum(losses), hits

    def _apply(self, grads: tuple[tf.Tensor, ...], lr: tf.Tensor, t: tf.Tensor) -> None:
        if self.optimizer == "adam":
            # Keras 3 Adam: var -= lr sqrt(1-b2^t)/(1-b1^t) m / (sqrt(v) + eps).
            step = tf.cast(t, tf.float32)
            beta_1, beta_2 = tf.constant(ADAM_BETA_1), tf.constant(ADAM_BETA_2)
            for variable, (m, v), grad in zip(self.params, self.slots, grads, strict=True):
                tf.raw_ops.ResourceApplyAdam(
                    var=variable.handle, m=m.handle, v=v.handle,
                    beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step), lr=lr,
                    beta1=beta_1, beta2=beta_2, epsilon=tf.constant(EPSILON), grad=grad,
                )  # fmt: skip
        elif self.optimizer == "rmsprop":
            # Keras 3 RMSprop (no momentum, not centred): var -= lr g / sqrt(v + eps), which is
            # the fused kernel with momentum 0 (its `mom` slot holds the last increment).
            for variable, (ms, mom), grad in zip(self.params, self.slots, grads, strict=True):
                tf.raw_ops.ResourceApplyRMSProp(
                    var=variable.handle, ms=ms.handle, mom=mom.handle, lr=lr,
                    rho=tf.constant(RMSPROP_RHO), momentum=tf.constant(0.0),
                    epsilon=tf.constant(EPSILON), grad=grad,
                )  # fmt: skip
        else:  # Keras' SGD without momentum
            for variable, grad in zip(self.params, grads, strict=True):
                tf.raw_ops.ResourceApplyGradientDescent(var=variable.handle, alpha=lr, delta=grad)

    def _predict_graph(self, images: tf.Tensor) -> tf.Tensor:
        return self._forward(images, None)[0]
