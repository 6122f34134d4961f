"""The one error vocabulary: each domain error maps to one HTTP status and one JSON body shape."""

from __future__ import annotations

from typing import Any, Self

from pydantic import ValidationError


def field_errors(exc: ValidationError, top_level: bool = False) -> dict[str, str]:
    """Turn a pydantic error into `{field: reason}`, one readable reason per field.

    `top_level` names only the outer field (`ids`, not `ids.1`): a query parameter is one string.
    """
    errors: dict[str, str] = {}
    for error in exc.errors():
        parts = [str(part) for part in error["loc"]][: 1 if top_level else None]
        reason = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        errors.setdefault(".".join(parts) or "body", reason.removeprefix("Value error, "))
    return errors


def summary(fields: dict[str, str]) -> str:
    """One line naming each field and its reason, for an error's message."""
    return "; ".join(f"{key}: {reason}" for key, reason in fields.items())


class TrainyardError(Exception):
    """Base of all domain errors; `to_dict()` is the body every API error answers with."""

    status = 400
    code = "bad_request"
    retry_after: int | None = None  # seconds, answered as `Retry-After` when set

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}

    def to_dict(self) -> dict[str, Any]:
        """Return `{"error": {"code", "message", "fields"}}`."""
        return {"error": {"code": self.code, "message": self.message, "fields": self.fields}}

    @classmethod
    def for_fields(cls, what: str, fields: dict[str, str]) -> Self:
        """An error whose message is `what (field: reason; ...)`."""
        return cls(f"{what} ({summary(fields)})", fields)


class BadRequest(TrainyardError):
    """The request is malformed: bad JSON, an unknown query parameter or sort field."""


class InvalidParams(TrainyardError):
    """A submitted value fails the schema; `fields` says which and why."""

    status = 422
    code = "invalid"


class Unauthorized(TrainyardError):
    """The request needs the token (a bearer token, or a dashboard session signed in with it)."""

    status = 401
    code = "unauthorized"


class NotFound(TrainyardError):
    """The named resource does not exist."""

    status = 404
    code = "not_found"


class Conflict(TrainyardError):
    """The resource's state does not allow the action (cancel a finished run, say)."""

    status = 409
    code = "conflict"


class Forbidden(TrainyardError):
    """The request may not be made from where it came (a cross-site write)."""

    status = 403
    code = "forbidden"


class TooManyRequests(TrainyardError):
    """The queue is full; `retry_after` says when to try again, in seconds."""

    status = 429
    code = "too_many_requests"

    def __init__(
        self, message: str, fields: dict[str, str] | None = None, retry_after: int = 60
    ) -> None:
        super().__init__(message, fields)
        self.retry_after = retry_after


class PayloadTooLarge(TrainyardError):
    """The request body is over the configured limit."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(TrainyardError):
    """The request body is not JSON."""

    status = 415
    code = "unsupported_media_type"


class NotMigrated(TrainyardError):
    """The database schema is missing or behind the code's latest revision."""

    status = 503
    code = "not_migrated"


class StoreUnavailable(TrainyardError):
    """The results store cannot be reached (restarting, failing over): nothing was changed."""

    status = 503
    code = "store_unavailable"
    retry_after = 5


class DatasetError(TrainyardError):
    """MNIST could not be found, downloaded or verified."""

    status = 500
    code = "dataset_error"
