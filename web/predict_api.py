"""Predictions from a succeeded run's model: `POST /api/runs/<id>/predict`.

The forward pass is numpy over the run's stored weights (shared/store/trained.py), kept per
process: the web tier never loads TensorFlow. A POST because a batch of 1,000 images does not fit
a URL, yet a read: it changes nothing, so it needs the token only where reads do.
"""

from __future__ import annotations

from flask import Blueprint, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from shared.domain.errors import PayloadTooLarge, UnsupportedMediaType
from shared.read.predictions import PredictOut, PredictRequest, predict_pixels, predict_png
from web import parsing
from web.database import app_settings, get_session
from web.openapi import ERRORS, FileResponse, answer, operation

bp = Blueprint("predict", __name__, url_prefix="/api")
PNG = "image/png"


def _body() -> bytes:
    """The request body, up to the prediction limit (larger than other writes' limit)."""
    limit = app_settings().predict_max_body_bytes
    too_large = PayloadTooLarge.for_fields(
        "the body is too large", {"body": f"at most {limit} bytes"}
    )
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    request.max_content_length = limit
    try:
        return request.get_data(cache=True)
    except RequestEntityTooLarge as exc:
        raise too_large from exc


@bp.post("/runs/<int:run_id>/predict")
@operation(
    "Predict digits with a run's model",
    {
        200: PredictOut,
        400: ERRORS[400],
        401: ERRORS[401],
        403: ERRORS[403],
        404: ERRORS[404],
        409: "The run has not succeeded: it has no model yet.",
        413: "The body is over TRAINYARD_PREDICT_MAX_BODY_BYTES, more than 1,000 images, or a "
        "PNG over 4,000,000 pixels.",
        415: "The body is neither JSON nor a PNG.",
        422: "An image has the wrong shape or a value that is not a number in 0-255 (`fields` "
        "names the image and position), the PNG is broken, or the drawing is empty.",
    },
    body=PredictRequest,
    raw_body=FileResponse(
        PNG,
        "One drawing of a digit, any size: it is cropped to the ink, scaled into 20x20 and "
        "centred in 28x28 as MNIST's digits were.",
    ),
    operation_id="predictRun",
    tag="runs",
)
def predict(run_id: int) -> Response:
    """Classify images with the run's trained model: JSON `{"inputs": [...]}` of up to 1,000
    images (784 or 28x28 values in 0-255), or one `image/png` drawing. The probabilities equal
    the downloaded model's `predict` within 1e-5."""
    data = _body()
    if request.mimetype == PNG:
        return answer(predict_png(get_session(), run_id, data))
    if request.is_json:
        return answer(predict_pixels(get_session(), run_id, parsing.json_object()))
    raise UnsupportedMediaType.for_fields(
        "send JSON or a PNG", {"Content-Type": "must be application/json or image/png"}
    )
