"""Predictions from a succeeded run's model: for pixel arrays, or for one PNG drawing prepared as
MNIST was made. The models here are the API's contract for `POST /api/runs/<id>/predict`."""

from __future__ import annotations

import base64
import io
import warnings
from typing import Annotated, Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from shared.domain.digits import (
    CLASSES,
    MAX_IMAGES,
    PIXELS,
    SIDE,
    Network,
    Pixels,
    mnist_style,
    pixel_inputs,
)
from shared.domain.errors import InvalidParams, PayloadTooLarge, UnsupportedMediaType
from shared.store.trained import run_network

# A drawing larger than this many pixels is refused before it is decoded (a PNG of a few
# kilobytes can claim gigapixels).
MAX_DRAWING_PIXELS = 4_000_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Pixel = Annotated[float, Field(ge=0, le=255)]
FlatImage = Annotated[list[Pixel], Field(min_length=PIXELS, max_length=PIXELS)]
Row = Annotated[list[Pixel], Field(min_length=SIDE, max_length=SIDE)]
GridImage = Annotated[list[Row], Field(min_length=SIDE, max_length=SIDE)]


class PredictRequest(BaseModel):
    """Images to classify, as MNIST stores them: each 784 pixel values (row by row) or 28 rows
    of 28, white ink on black, 0-255. The run's own scaling is applied."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[FlatImage | GridImage] = Field(min_length=1, max_length=MAX_IMAGES)


class Prediction(BaseModel):
    """One image's most probable digit and the probability of each of the ten."""

    label: int = Field(ge=0, le=9)
    probabilities: list[float] = Field(min_length=CLASSES, max_length=CLASSES)


class PredictOut(BaseModel):
    """The predictions, one per image in order; for a PNG, the 28x28 image the model saw."""

    run_id: int
    predictions: list[Prediction]
    image: str | None = Field(
        default=None,
        description="For a PNG: the 28x28 input the model saw, as a `data:image/png` URI.",
    )
    pixels: list[int] | None = Field(
        default=None, description="For a PNG: the same 28x28 input as 784 values, row by row."
    )


def _predictions(network: Network, images: Pixels) -> list[Prediction]:
    return [
        Prediction(label=int(row.argmax()), probabilities=row.tolist())
        for row in network.probabilities(images)
    ]


def predict_pixels(session: Session, run_id: int, body: dict[str, Any]) -> PredictOut:
    """Predict `{"inputs": [...]}`; 404 no such run, 409 not succeeded, 413 over 1,000 images,
    422 naming a bad image and position."""
    unknown = sorted(set(body) - {"inputs"})
    if unknown:
        raise InvalidParams.for_fields("invalid request", dict.fromkeys(unknown, "unknown field"))
    if "inputs" not in body:
        raise InvalidParams.for_fields("invalid request", {"inputs": "Field required"})
    network = run_network(session, run_id)
    images = pixel_inputs(body["inputs"])
    return PredictOut(run_id=run_id, predictions=_predictions(network, images))


def decode_png(data: bytes) -> Image.Image:
    """Open a PNG, refusing anything else (415) and one over the pixel limit (413)."""
    if not data.startswith(PNG_SIGNATURE):
        raise UnsupportedMediaType.for_fields("the body is not a PNG", {"body": "not a PNG image"})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=["PNG"])
            width, height = image.size
            if width * height > MAX_DRAWING_PIXELS:
                raise PayloadTooLarge.for_fields(
                    "the image is too large",
                    {"body": f"{width}x{height} is over {MAX_DRAWING_PIXELS:,} pixels"},
                )
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidParams.for_fields(
            "the PNG cannot be read", {"body": f"broken PNG: {exc}"}
        ) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge.for_fields("the image is too large", {"body": str(exc)}) from exc
    return image


def _data_uri(pixels: np.ndarray[Any, Any]) -> str:
    out = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def predict_png(session: Session, run_id: int, data: bytes) -> PredictOut:
    """Predict one PNG drawing of any size, prepared as MNIST was made; 422 for an empty one."""
    image = decode_png(data)
    # The run's state is checked before the drawing is prepared: a 409 is the first answer due.
    network = run_network(session, run_id)
    seen = mnist_style(image)
    predictions = _predictions(network, seen.reshape(1, PIXELS).astype(np.float32))
    return PredictOut(
        run_id=run_id,
        predictions=predictions,
        image=_data_uri(seen),
        pixels=seen.reshape(-1).tolist(),
    )
