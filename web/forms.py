"""The New run form, generated from the hyperparameter schema so the two cannot drift."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import BooleanField, Field, FloatField, IntegerField, SelectField, StringField
from wtforms.validators import Length, Optional, ValidationError

from shared.domain.errors import InvalidParams
from shared.domain.params import OPTIMIZERS, Hyperparams, check_name, parse_params
from shared.store.models import Run


def _field_for(name: str) -> Field:
    info = Hyperparams.model_fields[name]
    label = name.replace("_", " ")
    kwargs: dict[str, Any] = {"description": info.description, "default": info.default}
    if name == "optimizer":
        return SelectField(label, choices=list(OPTIMIZERS), **kwargs)
    if name == "normalize":
        return BooleanField(label, **kwargs)
    if info.annotation is float:
        return FloatField(label, validators=[Optional()], **kwargs)
    return IntegerField(label, validators=[Optional()], **kwargs)


class RunForm(FlaskForm):
    """A run's name and every hyperparameter, with the schema's defaults filled in."""

    name = StringField("name", validators=[Optional(), Length(max=200)])

    def validate_name(self, field: Field) -> None:
        try:
            check_name(field.data)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    def params_data(self) -> dict[str, Any]:
        """Return the entered hyperparameters; blank fields are left out so defaults apply."""
        return {
            name: self[name].data
            for name in Hyperparams.model_fields
            if self[name].data is not None
        }

    def validate_params(self) -> Hyperparams | None:
        """Check the entries against the schema, putting each reason beside its field."""
        try:
            return parse_params(self.params_data())
        except InvalidParams as exc:
            for key, reason in exc.fields.items():
                name = key.removeprefix("params.")
                if name in Hyperparams.model_fields:
                    self[name].errors = [*self[name].errors, reason]
            return None


def clone_data(run: Run) -> dict[str, Any]:
    """Form data that repeats a run: its name and hyperparameters, the seed left blank.

    The seed stays blank so the clone draws a new one: a clone is usually a variation to try,
    and typing the old seed back in is one field away when an exact repeat is wanted.
    """
    data = {name: value for name, value in run.params.items() if name != "seed"}
    data["name"] = f"{run.name} (clone)"[:200]
    return data


for _name in Hyperparams.model_fields:
    setattr(RunForm, _name, _field_for(_name))
