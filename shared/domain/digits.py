"""Digits for a trained model: checking pixel inputs, preparing a drawing as MNIST was made, and
the forward pass in numpy.

A run's network is Flatten -> Dense(H, relu) -> Dropout -> Dense(10) logits, its pixel scaling
first (worker/training/model.py). At inference Dropout passes its input through, so the pass is
two matrix products; in float32, as Keras computes, it agrees with `model.predict` to ~1e-6.
No TensorFlow: the web tier answers predictions without loading it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from shared.domain.errors import InvalidParams, PayloadTooLarge

SIDE = 28
PIXELS = SIDE * SIDE
CLASSES = 10
MAX_IMAGES = 1000
# MNIST's digits fit a 20x20 box, placed in 28x28 with their centre of mass at the centre
# (14, 14 in pixel indices: the mean over the test set is 13.99, 14.01).
BOX = 20
CENTRE = 14.0
# A drawing whose strongest ink is this faint (0-255, after the background is taken away) is empty.
FAINTEST_INK = 32

Pixels = NDArray[np.float32]


class EmptyDrawing(InvalidParams):
    """A drawing with no ink on it."""


@dataclass(frozen=True)
class Layer:
    """One Dense layer: `activation(x @ kernel + bias)`."""

    kernel: NDArray[np.float32]
    bias: NDArray[np.float32]
    relu: bool


@dataclass(frozen=True)
class Network:
    """A trained run's weights: the pixel scaling, then its Dense layers in order."""

    scale: float
    offset: float
    layers: tuple[Layer, ...]

    @property
    def nbytes(self) -> int:
        return sum(layer.kernel.nbytes + layer.bias.nbytes for layer in self.layers)

    def probabilities(self, images: Pixels) -> NDArray[np.float32]:
        """Softmax over the logits of `images` ([N, 784], raw 0-255 pixels): [N, 10]."""
        x = images
        if self.scale != 1.0 or self.offset != 0.0:
            x = x * np.float32(self.scale) + np.float32(self.offset)
        for layer in self.layers:
            x = x @ layer.kernel + layer.bias
            if layer.relu:
                np.maximum(x, 0, out=x)
        shifted = x - x.max(axis=1, keepdims=True)
        exps = np.exp(shifted)
        probabilities: NDArray[np.float32] = exps / exps.sum(axis=1, keepdims=True)
        return probabilities


def _field(index: int, *position: int) -> str:
    return ".".join(str(part) for part in ("inputs", index, *position))


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _image_errors(index: int, image: Any) -> dict[str, str]:
    """Why one image is not 784 values or 28 rows of 28, each a number in 0-255 (first fault)."""
    shape = "784 values, or 28 rows of 28"
    if not isinstance(image, list):
        return {_field(index): f"must be a list of {shape}"}
    cells: list[tuple[tuple[int, ...], Any]]
    if len(image) == PIXELS and all(not isinstance(v, list) for v in image):
        cells = [((i,), v) for i, v in enumerate(image)]
    elif len(image) == SIDE and all(isinstance(row, list) for row in image):
        for r, row in enumerate(image):
            if len(row) != SIDE:
                return {_field(index, r): f"a row must hold {SIDE} values, not {len(row)}"}
        cells = [((r, c), v) for r, row in enumerate(image) for c, v in enumerate(row)]
    else:
        return {_field(index): f"must be {shape}, not a list of {len(image)}"}
    for position, value in cells:
        if not _is_number(value) or not math.isfinite(value):
            return {_field(index, *position): "must be a number"}
        if not 0 <= value <= 255:
            return {_field(index, *position): f"{value} is outside 0-255"}
    return {}


def _one_by_one(inputs: Sequence[Any]) -> Pixels:
    """Check each image on its own: raise 422 at the first fault, else return them (a batch may
    mix flat and 28x28 images)."""
    for index, image in enumerate(inputs):
        errors = _image_errors(index, image)
        if errors:
            raise InvalidParams.for_fields("invalid image", errors)
    return np.stack([np.asarray(image, dtype=np.float32).reshape(PIXELS) for image in inputs])


def _all_at_once(inputs: list[Any]) -> Pixels | None:
    """A well-formed batch of one shape in a few numpy calls; None for anything else."""
    try:
        array = np.array(inputs)
    except (ValueError, OverflowError):  # ragged rows, or an integer numpy cannot hold
        return None
    if array.shape[1:] not in ((PIXELS,), (SIDE, SIDE)) or array.dtype.kind not in "iuf":
        return None
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        return None
    if array.min() < 0 or array.max() > 255:
        return None
    # numpy reads JSON's true and false as numbers; they are not pixel values.
    flat = chain.from_iterable(chain.from_iterable(inputs) if array.ndim == 3 else inputs)
    if bool in set(map(type, flat)):
        return None
    return array.reshape(len(inputs), PIXELS).astype(np.float32)


def pixel_inputs(inputs: Any) -> Pixels:
    """Check a request's `inputs` (images of 784 or 28x28 values in 0-255) and return them as
    float32 [N, 784]; a fault raises 422 naming the image and the position."""
    if not isinstance(inputs, list):
        raise InvalidParams.for_fields("invalid request", {"inputs": "must be a list of images"})
    if not inputs:
        raise InvalidParams.for_fields("invalid request", {"inputs": "at least one image"})
    if len(inputs) > MAX_IMAGES:
        raise PayloadTooLarge.for_fields(
            "too many images",
            {"inputs": f"at most {MAX_IMAGES} images a request, not {len(inputs)}"},
        )
    # The quick path takes a well-formed batch; anything else is walked, to name the first fault.
    images = _all_at_once(inputs)
    return images if images is not None else _one_by_one(inputs)


def _shift_into(canvas: NDArray[np.float32], small: NDArray[np.float32]) -> None:
    """Paste `small` into `canvas` so that its centre of mass lands on the centre."""
    height, width = small.shape
    total = small.sum()
    com_y = (small.sum(axis=1) * np.arange(height)).sum() / total
    com_x = (small.sum(axis=0) * np.arange(width)).sum() / total
    top = int(np.clip(round(CENTRE - com_y), 0, SIDE - height))
    left = int(np.clip(round(CENTRE - com_x), 0, SIDE - width))
    canvas[top : top + height, left : left + width] = small


def mnist_style(image: Image.Image) -> NDArray[np.uint8]:
    """A drawing or photo of one digit as MNIST's 28x28: white ink on black, cropped to the ink,
    scaled to fit 20x20 keeping its aspect ratio (anti-aliased), centre of mass at the centre.

    Transparent parts are paper. Dark ink on light paper is inverted (the paper is whatever the
    image's border mostly is); faint ink is stretched so its strongest pixel is 255.
    """
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        image = image.convert("RGBA")
        paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, image)
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    ink = background - gray if background > 127 else gray - background
    np.maximum(ink, 0, out=ink)
    strongest = float(ink.max())
    if strongest < FAINTEST_INK:
        raise EmptyDrawing("the drawing is empty (image: no ink found)", {"image": "no ink found"})
    ink *= 255.0 / strongest
    rows = np.flatnonzero(ink.max(axis=1) >= FAINTEST_INK)
    cols = np.flatnonzero(ink.max(axis=0) >= FAINTEST_INK)
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = ink.shape
    factor = BOX / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    # LANCZOS on the float image: anti-aliased whether it shrinks or grows.
    scaled = Image.fromarray(ink, mode="F").resize(size, Image.Resampling.LANCZOS)
    small = np.clip(np.asarray(scaled, dtype=np.float32), 0, 255)
    canvas = np.zeros((SIDE, SIDE), dtype=np.float32)
    _shift_into(canvas, small)
    return np.rint(canvas).astype(np.uint8)
