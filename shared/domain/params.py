"""The hyperparameter schema: one pydantic model used by the form, the API and the worker."""

from __future__ import annotations

import random
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from shared.domain.errors import InvalidParams, field_errors
from shared.domain.text import UNPRINTABLE, UNPRINTABLE_CHARS

# The largest value every database's INTEGER column holds; ids, seeds and integer filters stay below.
INT32_MAX = 2**31 - 1
Optimizer = Literal["adam", "sgd", "rmsprop"]
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)


class Hyperparams(BaseModel):
    """What one training run is asked to do; the defaults are the TensorFlow 2 quickstart's recipe."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(5, ge=1, le=100, description="Passes over the training images.")
    batch_size: int = Field(32, ge=1, le=8192, description="Images per gradient step.")
    learning_rate: float = Field(0.001, gt=0, le=1, description="Optimizer step size.")
    optimizer: Optimizer = Field("adam", description="Keras optimizer.")
    hidden_units: int = Field(128, ge=1, le=4096, description="Width of the hidden Dense layer.")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout rate after the hidden layer.")
    normalize: bool = Field(True, description="Divide pixels by 255 so they lie in [0, 1].")
    validation_split: float = Field(
        0.0, ge=0, le=0.5, description="Fraction of the training images held out for validation."
    )
    train_samples: int = Field(
        60000, ge=100, le=60000, description="Train on the first N training images."
    )
    seed: int | None = Field(
        None, ge=0, le=INT32_MAX, description="Random seed; drawn at submit time when omitted."
    )

    def with_seed(self) -> Hyperparams:
        """Return these parameters with a seed, drawing one if none was given."""
        if self.seed is not None:
            return self
        return self.model_copy(update={"seed": random.randint(0, INT32_MAX)})


PARAM_NAMES: tuple[str, ...] = tuple(Hyperparams.model_fields)


def check_name(value: str | None) -> str | None:
    """A run's (or study's) name: printable text a database can store, else a ValueError."""
    if value is None:
        return value
    if UNPRINTABLE_CHARS.search(value):
        raise ValueError("must not contain control or text-direction characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


Name = Annotated[
    str | None,
    Field(
        None,
        max_length=200,
        description="A label; one is made up from the params if empty.",
        # Documented for clients; `check_name` enforces it with a reason people can read.
        json_schema_extra={"pattern": f"^[^{UNPRINTABLE}]*$"},
    ),
    AfterValidator(check_name),
]


def parse_params(data: Any, prefix: str = "params") -> Hyperparams:
    """Validate raw input into `Hyperparams`, raising `InvalidParams` that names each bad field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidParams(f"{prefix} must be an object", {prefix: "must be an object"})
    try:
        return Hyperparams.model_validate(data)
    except ValidationError as exc:
        fields = {f"{prefix}.{name}": reason for name, reason in field_errors(exc).items()}
        raise InvalidParams.for_fields("invalid hyperparameters", fields) from exc
